"""Accessibility checks run in the browser on every page the browser tests open.

First axe-core (bundled by axe-playwright-python) with the WCAG 2.0/2.1 A and AA rules:
any violation fails, named by rule and element. Then the checks the portal promises that
axe does not make, written out: one h1 and headings without skipped levels, a label for
every control, text contrast of at least 4.5:1 (computed from the rendered colours, WCAG 2
relative luminance, also for text axe leaves as "needs review"), a skip link that is the
first Tab stop, visible focus, and a print stylesheet that hides the navigation.
"""

from __future__ import annotations

from typing import Any

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page

_AXE = Axe()
_WCAG_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}

# Runs in the page: every problem as a sentence naming the element.
_AUDIT = r"""
() => {
  const problems = [];
  const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
    (el.getAttribute('name') ? '[name=' + el.getAttribute('name') + ']' : '') +
    ' "' + (el.textContent || '').trim().slice(0, 40) + '"';
  if (!document.documentElement.lang) problems.push('html has no lang');
  if (!document.title.trim()) problems.push('the page has no title');
  const headings = [...document.querySelectorAll('h1,h2,h3,h4,h5,h6')];
  if (headings.filter(h => h.tagName === 'H1').length !== 1) problems.push('the page needs exactly one h1');
  let level = 0;
  for (const h of headings) {
    const next = Number(h.tagName[1]);
    if (level === 0 && next !== 1) problems.push('the first heading is not h1: ' + name(h));
    if (level && next > level + 1) problems.push('heading level skipped: ' + name(h));
    level = next;
  }
  for (const el of document.querySelectorAll('input,select,textarea,button')) {
    if (el.type === 'hidden') continue;
    const labelled = (el.labels && el.labels.length) || el.getAttribute('aria-label') ||
      (el.tagName === 'BUTTON' && el.textContent.trim());
    if (!labelled) problems.push('control without a label: ' + name(el));
  }
  const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  const rgba = (s) => { const m = s.match(/rgba?\(([^)]+)\)/); if (!m) return null;
    const p = m[1].split(',').map(x => parseFloat(x));
    return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
  const luminance = (c) => 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0) return c;
    }
    return {r: 255, g: 255, b: 255, a: 1};
  };
  let checked = 0;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const el = node.parentElement;
    if (!node.textContent.trim() || !el || seen.has(el)) continue;
    seen.add(el);
    const style = getComputedStyle(el);
    const box = el.getBoundingClientRect();
    if (style.visibility === 'hidden' || style.display === 'none' || box.width === 0 || box.height === 0) continue;
    if (el.closest('.visually-hidden') || (el.closest('.skip-link') && box.bottom <= 0)) continue;
    const fg = rgba(style.color), bg = background(el);
    const [hi, lo] = [luminance(fg), luminance(bg)].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    checked += 1;
    if (ratio < 4.5) problems.push('contrast ' + ratio.toFixed(2) + ':1 below 4.5:1: ' + name(el));
  }
  return {problems, checked};
}
"""


def audit(page: Page) -> None:
    _axe(page)
    found: dict[str, Any] = page.evaluate(_AUDIT)
    assert found["checked"] > 3, f"{page.url}: too little text to check contrast"
    assert not found["problems"], f"{page.url}:\n" + "\n".join(found["problems"])
    _keyboard(page)
    _print_style(page)


def _axe(page: Page) -> None:
    results = _AXE.run(page, options=_WCAG_AA).response
    assert results["passes"], f"{page.url}: axe checked nothing"
    problems = [
        f"{v['id']} ({v['impact']}): {v['help']} at {', '.join(str(n['target']) for n in v['nodes'][:3])}"
        for v in results["violations"]
    ]
    assert not problems, f"{page.url}: axe-core found:\n" + "\n".join(problems)


def _keyboard(page: Page) -> None:
    """The first Tab reaches the skip link, shown and outlined; Enter moves focus to the content."""
    page.evaluate("() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); }")
    page.keyboard.press("Tab")
    focused = page.evaluate(
        "() => { const e = document.activeElement; const s = getComputedStyle(e); const b = e.getBoundingClientRect();"
        " return {cls: e.className, top: b.top, outline: s.outlineStyle, width: parseFloat(s.outlineWidth)}; }"
    )
    assert focused["cls"] == "skip-link", f"{page.url}: first Tab stop is {focused}"
    assert focused["top"] >= 0 and focused["outline"] != "none" and focused["width"] >= 2, focused
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main", f"{page.url}: skip link did not move focus"
    # Every further Tab stop shows where focus is.
    for _ in range(6):
        page.keyboard.press("Tab")
        outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
        tag = page.evaluate("() => document.activeElement.tagName")
        if tag == "BODY":
            break
        assert outline != "none", f"{page.url}: focused {tag} has no visible focus"


def _print_style(page: Page) -> None:
    page.emulate_media(media="print")
    try:
        hidden = page.evaluate(
            "() => [...document.querySelectorAll('.site-header nav, .skip-link, form')]"
            ".every(e => getComputedStyle(e).display === 'none')"
        )
        assert hidden, f"{page.url}: the print style shows navigation or forms"
    finally:
        page.emulate_media(media="screen")
