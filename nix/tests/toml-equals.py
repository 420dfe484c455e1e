"""Exit 0 when a TOML file holds exactly the data of a JSON file (used by checks.module-checks)."""

import json
import sys
import tomllib

toml_path, json_path = sys.argv[1], sys.argv[2]
with open(toml_path, "rb") as f:
    got = tomllib.load(f)
with open(json_path, encoding="utf-8") as f:
    want = json.load(f)
if got != want:
    print(f"{toml_path}:\n  got:  {json.dumps(got, sort_keys=True)}\n  want: {json.dumps(want, sort_keys=True)}")
    sys.exit(1)
