"""Every template of the rule file, as APPROVED Siteti sandbox templates.

    python scripts/sandbox_templates.py                      # print them (JSON lines)
    python scripts/sandbox_templates.py --sandbox URL        # PUT them to a running sandbox
    python scripts/sandbox_templates.py --rules FILE …       # another rule file

The rule file is FILE, else `TEMPLATE_RULES_FILE`, else the shipped `dispatcher/rules.yaml`.
Each template goes to `PUT {URL}/_sandbox/templates/{id}` with
`{"status": "APPROVED", "variables": [...]}`; a variable keeps its trailing `?` when optional
(the sandbox's convention) and is named as the dispatcher sends it (`details.property` →
`property`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from bridge.config import Settings
from dispatcher.rules.model import RuleSet, Variable, configured_rules_file, load_rules


def sandbox_variables(specs: list[str]) -> list[str]:
    return [Variable(spec).name + ("?" if Variable(spec).optional else "") for spec in specs]


def template_payloads(rules: RuleSet) -> dict[str, dict[str, Any]]:
    """Template id → the control API's body, in the file's order."""
    return {
        template_id: {"status": "APPROVED", "variables": sandbox_variables(specs)}
        for template_id, specs in rules.templates.items()
    }


def register(sandbox_url: str, rules: RuleSet, client: httpx.Client | None = None) -> list[str]:
    """PUT every template to the sandbox; returns the ids. Raises httpx.HTTPError on failure."""
    own = client is None
    http = client or httpx.Client(timeout=10.0)
    try:
        for template_id, body in template_payloads(rules).items():
            answer = http.put(
                f"{sandbox_url.rstrip('/')}/_sandbox/templates/{template_id}", json=body
            )
            answer.raise_for_status()
        return list(rules.templates)
    finally:
        if own:
            http.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rules", type=Path, help="rule file (default: the configured one)")
    parser.add_argument("--sandbox", metavar="URL", help="the sandbox's base URL to PUT to")
    args = parser.parse_args(argv)
    rules = load_rules(args.rules or configured_rules_file(Settings().template_rules_file))
    if args.sandbox is None:
        for template_id, body in template_payloads(rules).items():
            print(json.dumps({"id": template_id, **body}, ensure_ascii=False))
        return 0
    try:
        ids = register(args.sandbox, rules)
    except httpx.HTTPError as exc:
        print(f"error: sandbox at {args.sandbox}: {exc}", file=sys.stderr)
        return 1
    print(f"{len(ids)} templates APPROVED in the sandbox at {args.sandbox}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
