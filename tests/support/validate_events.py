#!/usr/bin/python3
"""Validates every line of egressd event logs against docs/egressd-events.schema.json.

usage: validate_events.py SCHEMA LOG [LOG...]   (exit 1 and a report on the first bad lines)
"""
import json
import sys

import jsonschema


def main():
    with open(sys.argv[1]) as f:
        schema = json.load(f)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    bad = 0
    lines = 0
    for path in sys.argv[2:]:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                lines += 1
                try:
                    event = json.loads(line)
                except json.JSONDecodeError as e:
                    print(f"{path}:{n}: not JSON: {e}")
                    bad += 1
                    continue
                for err in validator.iter_errors(event):
                    bad += 1
                    where = "/".join(str(p) for p in err.absolute_path) or "(line)"
                    print(f"{path}:{n}: {where}: {err.message}")
                    if bad > 20:
                        sys.exit(1)
    print(f"{lines} lines checked, {bad} errors")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
