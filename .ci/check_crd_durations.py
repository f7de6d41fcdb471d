#!/usr/bin/env python3
"""Every duration rule in the generated CRDs does what its message says, evaluated with cel-python as the
API server would: for each `x-kubernetes-validations` rule of the form
`duration(self) >= duration('MIN') && duration(self) <= duration('MAX')`, the field's default, MIN and
MAX are accepted, one second past MAX and the value of issue 16's crash loop (`999999999999h`) are
refused (an evaluation error is a refusal too: the API server rejects the object), and so is one
millisecond under MIN when MIN is above zero.

Usage: check_crd_durations.py deploy/crds/*.yaml   (needs PyYAML and cel-python; .ci/run installs them)
Exits non-zero naming each file, field and value that is judged wrongly."""

import re
import sys

RULE = re.compile(r"^duration\(self\) >= duration\('([^']+)'\) && duration\(self\) <= duration\('([^']+)'\)$")


def walk(schema, path):
    """Yields (path, property schema) for every property below `schema`."""
    for name, prop in (schema.get("properties") or {}).items():
        here = f"{path}.{name}"
        yield here, prop
        yield from walk(prop, here)
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")


def verdict(celpy, program, value):
    try:
        result = program.evaluate(celpy.json_to_cel({"self": value}))
    except Exception:  # noqa: BLE001 (celpy's evaluation errors have no common base class)
        return False
    return isinstance(result, celpy.celtypes.BoolType) and bool(result)


def check_file(path, yaml, celpy):
    problems = []
    env = celpy.Environment()
    with open(path) as f:
        crd = yaml.safe_load(f)
    for version in crd["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        for field, prop in walk(schema, crd["spec"]["names"]["kind"]):
            for rule in prop.get("x-kubernetes-validations") or []:
                m = RULE.match(rule["rule"])
                if not m:
                    continue
                low, high = m.groups()
                program = env.program(env.compile(rule["rule"]))
                accept = [low, high] + ([prop["default"]] if "default" in prop else [])
                refuse = [f"{high}1s", "999999999999h"]  # "24h1s": one second past + ([] if low in ("0s", "0") else ["1ms"])
                for value in accept:
                    if not verdict(celpy, program, value):
                        problems.append(f"{path}: {field}: {value!r} is refused by {rule['rule']!r}")
                for value in refuse:
                    if verdict(celpy, program, value):
                        problems.append(f"{path}: {field}: {value!r} is accepted by {rule['rule']!r}")
    return problems


def main(paths):
    install = "python3 -m pip install cel-python pyyaml"
    try:
        import celpy
        import yaml
    except ImportError as e:
        print(f"cannot evaluate the CRDs' CEL rules: {e} ({install})", file=sys.stderr)
        return 1
    problems = [p for path in paths for p in check_file(path, yaml, celpy)]
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
