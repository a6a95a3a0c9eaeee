"""The notices a breach owes, written from the frozen scope (pure: no I/O).

* The report to the state's Chief Privacy Officer (8 NYCRR 121.10(b), (d)): a document and
  the same facts as a machine-readable object.
* A letter to each affected family, in plain language and in the family's language where
  the student's record names one (English, Spanish and Chinese today; any other language
  gets the English letter and a line in that letter on how to ask for a translation). It
  says what of *their* child's data was involved, when, and whom to contact, with the
  contents 121.10(f) asks for where known: a brief description, the dates of the incident
  and of its discovery, the kinds of data, an estimate of the number of records, the
  investigation, and a contact.
* A summary for each district data office.

Nothing here names a student: letters go to the parent of a pseudonymous key, and the
portal shows each one beside that child's disclosure report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from homeroom.catalogue import CATALOGUE

LANGUAGES = ("en", "es", "zh")

# What a record's home language may say (Ed-Fi descriptors, ISO 639 codes, names) → a letter language.
_ALIASES: dict[str, str] = {
    **dict.fromkeys(("en", "eng", "english"), "en"),
    **dict.fromkeys(("es", "spa", "spanish", "español", "espanol", "castellano"), "es"),
    **dict.fromkeys(
        ("zh", "zho", "chi", "cmn", "yue", "chinese", "mandarin", "cantonese", "中文", "汉语", "普通话"), "zh"
    ),
}


def letter_language(home_language: str | None) -> str | None:
    """The letter language for a record's home language; None when there is none or no letter in it."""
    if not home_language:
        return None
    return _ALIASES.get(home_language.strip().lower().split("-")[0].split("_")[0])


_MONTHS = {
    "en": (
        [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ],
        "{d} {m} {y}",
    ),
    "es": (
        [
            "enero",
            "febrero",
            "marzo",
            "abril",
            "mayo",
            "junio",
            "julio",
            "agosto",
            "septiembre",
            "octubre",
            "noviembre",
            "diciembre",
        ],
        "{d} de {m} de {y}",
    ),
}


def day(moment: datetime | str | None, language: str = "en") -> str:
    if moment is None:
        return "—"
    when = datetime.fromisoformat(moment.replace("Z", "+00:00")) if isinstance(moment, str) else moment
    when = when.astimezone(UTC)
    if language == "zh":
        return f"{when.year}年{when.month}月{when.day}日"
    months, pattern = _MONTHS.get(language, _MONTHS["en"])
    return pattern.format(d=when.day, m=months[when.month - 1], y=when.year)


# Element names in the letters' languages (the catalogue's are English).
_ELEMENT_NAMES: dict[str, dict[str, str]] = {
    "es": {
        "student.state_id": "número de estudiante del estado",
        "student.local_id": "número de estudiante del distrito",
        "student.first_name": "nombre",
        "student.middle_name": "segundo nombre",
        "student.last_name": "apellido",
        "student.birth_date": "fecha de nacimiento",
        "student.email": "correo electrónico del estudiante",
        "student.address": "dirección del hogar",
        "student.phone": "número de teléfono",
        "student.sex": "sexo",
        "student.race_ethnicity": "raza y etnia",
        "student.home_language": "idioma del hogar",
        "enrollment.grade_level": "grado escolar",
        "enrollment.school_id": "escuela",
        "enrollment.entry_date": "fecha de ingreso",
        "enrollment.exit_date": "fecha de salida",
        "enrollment.exit_code": "motivo de salida",
        "enrollment.class": "clases y secciones",
        "attendance.daily": "asistencia diaria",
        "attendance.period": "asistencia por clase",
        "attendance.summary": "resumen de asistencia",
        "discipline.suspension_dates": "fechas de suspensión",
        "program.iep": "indicador de programa de educación individualizado (IEP)",
        "program.section_504": "indicador de plan de la Sección 504",
        "program.ell": "indicador de estudiante de inglés",
        "program.free_reduced_lunch": "elegibilidad para comidas gratuitas o a precio reducido",
        "health.immunizations": "registro de vacunas",
        "record.parent_statement": "declaración de los padres sobre un registro impugnado",
    },
    "zh": {
        "student.state_id": "州学生编号",
        "student.local_id": "学区学生编号",
        "student.first_name": "名字",
        "student.middle_name": "中间名",
        "student.last_name": "姓氏",
        "student.birth_date": "出生日期",
        "student.email": "学生电子邮箱",
        "student.address": "家庭住址",
        "student.phone": "电话号码",
        "student.sex": "性别",
        "student.race_ethnicity": "种族和族裔",
        "student.home_language": "家庭语言",
        "enrollment.grade_level": "年级",
        "enrollment.school_id": "就读学校",
        "enrollment.entry_date": "入学日期",
        "enrollment.exit_date": "离校日期",
        "enrollment.exit_code": "离校原因",
        "enrollment.class": "课程和班级",
        "attendance.daily": "每日出勤",
        "attendance.period": "课时出勤",
        "attendance.summary": "出勤汇总",
        "discipline.suspension_dates": "停学日期",
        "program.iep": "个别化教育计划（IEP）标识",
        "program.section_504": "504计划标识",
        "program.ell": "英语学习者标识",
        "program.free_reduced_lunch": "免费或减价午餐资格",
        "health.immunizations": "疫苗接种记录",
        "record.parent_statement": "家长对有争议记录的声明",
    },
}


def element_name(element: str, language: str = "en") -> str:
    if language != "en" and element in _ELEMENT_NAMES.get(language, {}):
        return _ELEMENT_NAMES[language][element]
    known = CATALOGUE.get(element)
    return known.name if known is not None else element


@dataclass(frozen=True, slots=True)
class IncidentFacts:
    """What every notice of one incident says, whoever it goes to."""

    incident_id: str
    recipient: str  # the organisation (or system) that was breached
    agreements: Sequence[str]
    description: str
    discovered_at: datetime
    exposure_start: datetime | None
    exposure_end: datetime | None
    contact: str
    investigation: str
    scope_version: int
    bundle_sha256: str
    tree_size: int
    tree_root: str
    witnessed: bool


def _period(facts: IncidentFacts, language: str) -> str:
    start, end = day(facts.exposure_start, language), day(facts.exposure_end, language)
    return {"en": f"{start} to {end}", "es": f"del {start} al {end}", "zh": f"{start}至{end}"}[language]


def family_letter(
    facts: IncidentFacts,
    *,
    district_id: str,
    elements: Sequence[str],
    unreadable_elements: Sequence[str],
    first_shared: str | None,
    last_shared: str | None,
    district_students: int,
    language: str | None,
    requested_language: str | None,
) -> tuple[str, str, str]:
    """(language, subject, body) of one family's letter."""
    lang = language if language in LANGUAGES else "en"
    names = [element_name(e, lang) for e in elements]
    gone = [element_name(e, lang) for e in unreadable_elements]
    if lang == "es":
        subject = f"Aviso de violación de datos: información de su hijo/a compartida con {facts.recipient}"
        lines = [
            "Estimada madre, padre o tutor:",
            "",
            f"Le escribimos porque {facts.recipient}, una organización que recibió datos de estudiantes del distrito "
            f"{district_id} según un acuerdo, tuvo una violación de seguridad. La descubrimos el "
            f"{day(facts.discovered_at, lang)}. La exposición ocurrió {_period(facts, lang)}.",
            "",
            "Qué información de su hijo/a estaba involucrada:",
            *[f"  - {n}" for n in names],
            f"El distrito compartió estos datos con {facts.recipient} entre el {day(first_shared, lang)} y el "
            f"{day(last_shared, lang)}.",
        ]
        if gone:
            lines += [
                "Estos otros datos también se compartieron, pero se destruyeron antes de la violación y no se podían "
                "leer: " + ", ".join(gone) + ".",
            ]
        lines += [
            "",
            f"Cuántos estudiantes: unos {district_students} estudiantes del distrito {district_id}.",
            f"Qué estamos haciendo: {facts.investigation or 'investigamos lo ocurrido con la organización.'}",
            "",
            f"Si tiene preguntas, comuníquese con: {facts.contact}.",
            "",
            "Este aviso se envía según la Ley de Educación de Nueva York 2-d y el reglamento 8 NYCRR 121.10.",
            f"Referencia: incidente {facts.incident_id}.",
        ]
        return lang, subject, "\n".join(lines) + "\n"
    if lang == "zh":
        subject = f"数据泄露通知：您孩子的信息曾提供给 {facts.recipient}"
        lines = [
            "尊敬的家长或监护人：",
            "",
            f"我们写信通知您：{facts.recipient} 是根据协议从 {district_id} 学区接收学生数据的机构，"
            "该机构发生了数据泄露。"
            f"我们于{day(facts.discovered_at, lang)}发现此事。泄露时间为{_period(facts, lang)}。",
            "",
            "涉及您孩子的哪些信息：",
            *[f"  - {n}" for n in names],
            f"学区在{day(first_shared, lang)}至{day(last_shared, lang)}期间将这些信息提供给了 {facts.recipient}。",
        ]
        if gone:
            lines += ["以下信息也曾提供，但在泄露发生前已被销毁，无法读取：" + "、".join(gone) + "。"]
        lines += [
            "",
            f"涉及学生人数：{district_id} 学区约 {district_students} 名学生。",
            f"我们正在采取的措施：{facts.investigation or '我们正在与该机构一起调查此事。'}",
            "",
            f"如有疑问，请联系：{facts.contact}。",
            "",
            "本通知依据纽约州教育法第2-d条及 8 NYCRR 121.10 发出。",
            f"参考编号：事件 {facts.incident_id}。",
        ]
        return lang, subject, "\n".join(lines) + "\n"
    subject = f"Notice of a data breach: your child's information shared with {facts.recipient}"
    lines = [
        "Dear parent or guardian,",
        "",
        f"We are writing because {facts.recipient}, an organisation that received student data from district "
        f"{district_id} under an agreement, had a security breach. It was discovered on "
        f"{day(facts.discovered_at)}. The exposure lasted from {_period(facts, 'en')}.",
        "",
        "What of your child's information was involved:",
        *[f"  - {n}" for n in names],
        f"The district shared this information with {facts.recipient} between {day(first_shared)} and "
        f"{day(last_shared)}.",
    ]
    if gone:
        lines += [
            "This information was shared too, but it was destroyed before the breach and could not be read: "
            + ", ".join(gone)
            + ".",
        ]
    lines += [
        "",
        f"How many students: about {district_students} students of district {district_id}.",
        f"What we are doing: {facts.investigation or 'we are investigating what happened with the organisation.'}",
        "",
        f"If you have questions, contact: {facts.contact}.",
    ]
    if requested_language and requested_language not in LANGUAGES:
        lines += [
            "",
            f"This letter is not yet available in your family's language ({requested_language}); "
            f"ask {facts.contact} for a translation.",
        ]
    lines += [
        "",
        "This notice is sent under New York Education Law section 2-d and 8 NYCRR 121.10.",
        f"Reference: incident {facts.incident_id}.",
    ]
    return "en", subject, "\n".join(lines) + "\n"


def cpo_report(
    facts: IncidentFacts,
    *,
    district_id: str,
    reported_by: str,
    contractor_notified_at: datetime | None,
    totals: Mapping[str, Any],
    containment: Sequence[Mapping[str, Any]],
    now: datetime,
) -> tuple[dict[str, Any], str]:
    """(machine-readable report, document) for one educational agency's report to the CPO."""
    district = (totals.get("districts") or {}).get(district_id, {})
    elements = {
        e: n for e, n in (totals.get("students_by_element") or {}).items() if n
    }  # incident-wide; the per-district count is `students`
    report: dict[str, Any] = {
        "format": "homeroom-cpo-report/1",
        "regulation": "8 NYCRR 121.10(b), (d)",
        "incident_id": facts.incident_id,
        "educational_agency": district_id,
        "reported_by": reported_by,
        "reported_at": now.astimezone(UTC).isoformat(),
        "third_party_contractor": facts.recipient,
        "agreements": list(facts.agreements),
        "discovered_at": facts.discovered_at.astimezone(UTC).isoformat(),
        "contractor_notified_at": contractor_notified_at.astimezone(UTC).isoformat()
        if contractor_notified_at
        else None,
        "exposure": {
            "start": facts.exposure_start.astimezone(UTC).isoformat() if facts.exposure_start else None,
            "end": facts.exposure_end.astimezone(UTC).isoformat() if facts.exposure_end else None,
        },
        "description": facts.description,
        "students_affected": int(district.get("students", 0)),
        "students_whose_data_was_unreadable": int(district.get("students_unreadable_only", 0)),
        "records_affected": int(district.get("disclosures", 0)),
        "data_elements": [{"element": e, "name": element_name(e), "students": n} for e, n in sorted(elements.items())],
        "actions_taken": [dict(step) for step in containment],
        "investigation": facts.investigation,
        "contact": facts.contact,
        "evidence": {
            "scope_version": facts.scope_version,
            "scope_bundle_sha256": facts.bundle_sha256,
            "audit_tree_size": facts.tree_size,
            "audit_tree_root": facts.tree_root,
            "witnessed": facts.witnessed,
            "verify_with": "homeroom incidents verify-scope BUNDLE --log-keys KEYS.json --witness-key WITNESS.pem",
        },
    }
    doc = [
        f"Report of a breach or unauthorized release of student data — incident {facts.incident_id}",
        "To: the Chief Privacy Officer, New York State Education Department (8 NYCRR 121.10(b), (d))",
        f"From: educational agency {district_id} (reported by {reported_by}) on {day(now)}",
        "",
        f"Third-party contractor: {facts.recipient} (agreements: {', '.join(facts.agreements) or 'none'})",
        f"Discovered: {day(facts.discovered_at)}",
        f"Contractor's notice received: {day(contractor_notified_at) if contractor_notified_at else 'not applicable'}",
        f"Period of exposure: {_period(facts, 'en')}",
        f"What happened: {facts.description}",
        "",
        f"Students affected in {district_id}: {report['students_affected']} "
        f"(and {report['students_whose_data_was_unreadable']} whose data had been destroyed before the breach)",
        f"Records (disclosures to the contractor) affected: {report['records_affected']}",
        "Kinds of data (students whose data the contractor could read, across the incident):",
        *[f"  - {d['name']} ({d['element']}): {d['students']}" for d in report["data_elements"]],
        "",
        "Actions taken:",
        *([f"  - {s.get('action', '')}: {s.get('summary', '')}" for s in containment] or ["  - none recorded yet"]),
        f"Investigation: {facts.investigation or 'under way'}",
        f"Contact: {facts.contact}",
        "",
        f"Evidence: scope version {facts.scope_version}, bundle SHA-256 {facts.bundle_sha256}, proven against the "
        f"disclosure log's signed tree head of size {facts.tree_size} (root {facts.tree_root})"
        f"{', cosigned by an independent witness' if facts.witnessed else ''}.",
        "Verify it without trusting Homeroom: homeroom incidents verify-scope BUNDLE --log-keys KEYS.json "
        "--witness-key WITNESS.pem",
    ]
    return report, "\n".join(doc) + "\n"


def district_summary(
    facts: IncidentFacts,
    *,
    district_id: str,
    totals: Mapping[str, Any],
    letters: int,
    languages: Mapping[str, int],
    obligations: Sequence[Mapping[str, Any]],
) -> tuple[str, str]:
    """(subject, body) of the summary for a district data office."""
    district = (totals.get("districts") or {}).get(district_id, {})
    lines = [
        f"Incident {facts.incident_id}: {facts.recipient} was breached ({_period(facts, 'en')}).",
        "",
        f"Your district's students affected: {district.get('students', 0)}; whose data had already been destroyed: "
        f"{district.get('students_unreadable_only', 0)}; disclosures involved: {district.get('disclosures', 0)}.",
        f"Letters to families: {letters} ("
        + ", ".join(f"{n} in {lang}" for lang, n in sorted(languages.items()))
        + "), on each family's notification list and by e-mail; printable from the incident page.",
        "",
        "Deadlines (8 NYCRR 121.10):",
        *[
            f"  - {o['kind'].replace('_', ' ')} ({o['basis']}): {o['standing']} — due {day(o['due_at'])}"
            for o in obligations
        ],
        "",
        f"Scope version {facts.scope_version}, bundle SHA-256 {facts.bundle_sha256}.",
    ]
    return f"Breach response summary for {district_id}: incident {facts.incident_id}", "\n".join(lines) + "\n"
