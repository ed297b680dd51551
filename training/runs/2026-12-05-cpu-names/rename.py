"""Give an artifact's own policy Llama Guard 3's prompt names (S3 "Sex Crimes", S4 "Child Exploitation", S11
"Self-Harm"), the default's since 2026-12-05, and record policy.toml in its manifest again. Codes, descriptions and
order stay; a category whose name is not the old default's is left alone.

    python training/runs/2026-12-05-cpu-names/rename.py pocketguard/assets/default-guard
"""

import json
import sys
from dataclasses import replace
from pathlib import Path

from pocketguard.artifact import MANIFEST, POLICY, verify_artifact
from pocketguard.compress.artifact import _file_entry
from pocketguard.policy import Category, Policy

OLD = {"S3": "Sex-Related Crimes", "S4": "Child Sexual Exploitation", "S11": "Suicide & Self-Harm"}

directory = Path(sys.argv[1])
manifest = verify_artifact(directory)
own = Policy.from_toml(directory / POLICY)
new = {c.code: c.name for c in Policy.default().categories}
cats: list[Category] = [replace(c, name=new[c.code]) if OLD.get(c.code) == c.name else c for c in own.categories]
renamed = [f"{a.code}: {a.name} -> {b.name}" for a, b in zip(own.categories, cats) if a != b]
(directory / POLICY).write_text(Policy(tuple(cats)).to_toml(), encoding="utf-8")
manifest["files"][POLICY] = _file_entry(directory / POLICY)
manifest["stats"]["bytes"] = sum(f["bytes"] for f in manifest["files"].values())
(directory / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
verify_artifact(directory)
print("\n".join(renamed) or "nothing to rename")
