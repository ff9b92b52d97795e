"""`make images STACK=<name>`: every image the lab's clusters will pull, where each comes from, and (with
--check) whether its registry has it, asked the way `up`'s image check asks. Reads the stack file only.

Exit status: 0, 1 when --check found an image missing, 2 when the stack file cannot be read.
"""
from __future__ import annotations

import argparse
import json
import sys

from .. import registry_check
from ..spec import LabSpec
from .status import load_spec_or_say_why


def plan_rows(spec: LabSpec) -> list[dict]:
    """One row per cluster and image, in plan order."""
    rows = []
    for cluster in spec.clusters:
        for image in spec.images_of(cluster):
            rows.append({"cluster": cluster.name, "ref": image.ref, "image": image.canonical,
                         "from": registry_check.ImageRef.parse(image.ref).registry,
                         "checked": cluster.image_check, "usedBy": image.used_by})
    return rows


def render_text(spec: LabSpec, stack: str, rows: list[dict], answers: dict[str, registry_check.Answer]) -> str:
    naming = spec.naming
    lines = [f"Images of stack {stack}, named as ks-installer names them (kslab:registry={naming.local_registry!r}, "
             f"kslab:namespaceOverride={naming.namespace_override!r}, kslab:zone={naming.zone!r}):"]
    for cluster in spec.clusters:
        mine = [r for r in rows if r["cluster"] == cluster.name]
        check = "checked before anything is created" if cluster.image_check else "not checked (imageCheck: false)"
        lines.append(f"\ncluster {cluster.name} ({cluster.role}, KubeSphere {cluster.kubesphere_version} on "
                     f"Kubernetes {cluster.kubernetes_version}): {len(mine)} images, {check}")
        width = max(len(r["image"]) for r in mine)
        for r in mine:
            answer = answers.get(r["ref"])
            state = f"  [{answer.state}: {answer.detail}]" if answer else ""
            lines.append(f"  {r['image']:<{width}}  {r['usedBy'].split(':', 1)[1]}{state}")
    by_registry: dict[str, set[str]] = {}
    for r in rows:
        by_registry.setdefault(r["from"], set()).add(r["ref"])
    lines.append("\n" + f"{len({r['ref'] for r in rows})} distinct images, from " + ", ".join(
        f"{registry} ({len(refs)})" for registry, refs in sorted(by_registry.items())))
    if any(r["image"].startswith(registry_check.WITHDRAWN_NAMESPACE) for r in rows):
        lines.append(f"Note: {registry_check.WITHDRAWAL_NOTE}. Point kslab at your copy of these images: set "
                     "kslab:registry (README 'Where the images come from').")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kslab images", description=__doc__.split("\n")[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--project-dir", default=".")
    parser.add_argument("--check", action="store_true", help="ask each image's registry now (a manifest HEAD)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    args = parser.parse_args(argv)
    spec = load_spec_or_say_why(args.project_dir, args.stack)
    if spec is None:
        return 2
    rows = plan_rows(spec)
    answers = registry_check.check([r["ref"] for r in rows]) if args.check else {}
    for r in rows:
        if r["ref"] in answers:
            r["answer"] = {"state": answers[r["ref"]].state, "detail": answers[r["ref"]].detail}
    print(json.dumps(rows, indent=2) if args.json else render_text(spec, args.stack, rows, answers))
    # as `up` judges: only images of clusters whose check is on can refuse the lab
    return 1 if any(r["checked"] and r["answer"]["state"] != registry_check.FOUND for r in rows if "answer" in r) \
        else 0


if __name__ == "__main__":
    sys.exit(main())
