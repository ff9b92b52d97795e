"""`make images STACK=<name>`: every image the lab's clusters will pull, where each comes from, and (with
--check) whether its registry has it, asked the way `up`'s image check asks. Reads the stack file only.

Exit status: 0, 1 when --check found an image missing, 2 when the stack file cannot be read.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

from kslab.cli.stack_spec import load_spec_or_say_why
from kslab.model import image_sources, images
from kslab.model.spec import LabSpec
from kslab.steps import registry_check

if TYPE_CHECKING:
    from kslab.steps.archives import ArchiveIndex


def archive_indexes(spec: LabSpec, project_dir: str) -> dict[str, ArchiveIndex | str]:
    """Each image archive the stack names (as it names it) -> its index (read, not verified: `up` reads every
    member), or why it cannot be read."""
    from kslab.steps import archives
    from kslab.steps.lab_registry import RegistryError
    found: dict[str, ArchiveIndex | str] = {}
    for name in spec.image_sources.archives if spec.image_sources else ():
        try:
            found[name] = archives.index_of(os.path.join(project_dir, os.path.expanduser(name)))
        except RegistryError as error:
            found[name] = str(error)
    return found


def plan_rows(spec: LabSpec, indexes: dict[str, ArchiveIndex | str] | None = None) -> list[dict]:
    """One row per cluster and image, in plan order. An image of the lab registry names the archive that fills it
    (the first that holds it, unless it is overridden: as the lab-images step chooses) and the sources it is
    copied from otherwise (asked in order); any other image is pulled by the cluster from its own registry."""
    rows = []
    for cluster in spec.clusters:
        lab = spec.uses_lab_registry(cluster)
        for image in spec.images_of(cluster):
            row = {"cluster": cluster.name, "ref": image.ref, "image": image.canonical,
                   "from": registry_check.ImageRef.parse(image.ref).registry,
                   "checked": cluster.image_check or lab, "usedBy": image.used_by}
            if lab and spec.image_sources is not None:
                path = spec.image_sources.upstream_path(image.ref)
                row["sources"] = spec.image_sources.candidates(path)
                archive = next((name for name, index in (indexes or {}).items()
                                if not isinstance(index, str) and path in index.images), None)
                if archive is not None and spec.image_sources.override_for(path) is None:
                    row["archive"] = archive
            rows.append(row)
    return rows


def lab_digests(spec: LabSpec) -> dict[str, str]:
    """The digest each lab image has in this lab's own repositories of the lab registry ("" where it has none
    yet); {} when the lab registry does not run. Asks only the local lab registry."""
    from kslab.steps import lab_registry, lab_store, registry_auth
    from kslab.steps.errors import RegistryError
    sources = spec.image_sources
    try:
        running = sources is not None and lab_registry.is_running(
            lab_registry.container_state(sources.lab, sources.lab.push_container))
    except RegistryError:  # no Docker here: nothing to tell
        return {}
    if sources is None or not running:
        return {}
    store = lab_store.LabStore(sources.lab, sources.lab_id, registry_auth.push_credentials(sources.lab))
    paths = {image.ref: sources.upstream_path(image.ref) for c in spec.clusters if spec.uses_lab_registry(c)
             for image in spec.images_of(c)}
    return {ref: store.digest(store.own(path)) for ref, path in paths.items()}


def check_rows(spec: LabSpec, rows: list[dict]) -> dict[str, registry_check.Answer]:
    """Each row's answer: its own registry's, or for a lab image the archive that fills it, else the first source
    that has it (asked as `up` asks: the lab resolves each image anew)."""
    direct = [r["ref"] for r in rows if "sources" not in r]
    answers = registry_check.check(direct) if direct else {}
    lab_rows = [r for r in rows if "sources" in r]
    located = registry_check.locate({r["ref"]: r["sources"] for r in lab_rows if "archive" not in r})
    for r in lab_rows:
        if "archive" in r:
            answers[r["ref"]] = registry_check.Answer(registry_check.FOUND, f"in the archive {r['archive']}")
        else:
            asked = located[r["ref"]]
            where = registry_check.found_at(asked)
            answers[r["ref"]] = registry_check.Answer(asked[-1][1].state if asked else registry_check.MISSING,
                                                      f"{where}" if where else "; ".join(
                                                          f"{ref}: {a.state} ({a.detail})" for ref, a in asked))
    return answers


def _filled_from(sources: image_sources.ImageSources, indexes: dict[str, ArchiveIndex | str]) -> list[str]:
    """What fills the lab registry: each archive (what it holds, or why it cannot be read), then the sources."""
    lines = []
    for name in sources.archives:
        index = indexes.get(name, "not read")
        lines.append(f"  archive {name}: " + (f"cannot be read: {index}" if isinstance(index, str) else
                                               f"{len(index.images)} images ({index.platform})"))
    if sources.prefixes:
        lines.append(("  then " if lines else "  ") + "kslab:imageSources in order: " + ", ".join(sources.prefixes))
    return lines


def render_text(spec: LabSpec, stack: str, rows: list[dict], answers: dict[str, registry_check.Answer],
                indexes: dict[str, ArchiveIndex | str] | None = None) -> str:
    naming = spec.naming
    lines = [f"Images of stack {stack}, named as ks-installer names them (kslab:registry={naming.local_registry!r}, "
             f"kslab:namespaceOverride={naming.namespace_override!r}, kslab:zone={naming.zone!r}):"]
    if spec.image_sources is not None:
        lab = spec.image_sources.lab
        lines.append(f"kind clusters pull from this lab's own repositories in the lab registry '{lab.name}' "
                     f"({spec.image_sources.root}, on kind's network), each image resolved by this stack from the "
                     "first of:")
        lines += _filled_from(spec.image_sources, indexes or {})
    for cluster in spec.clusters:
        mine = [r for r in rows if r["cluster"] == cluster.name]
        if spec.uses_lab_registry(cluster):
            check = "copied from the sources into the lab registry before anything is created"
        else:
            check = "checked before anything is created" if cluster.image_check else "not checked (imageCheck: false)"
        lines.append(f"\ncluster {cluster.name} ({cluster.role}, KubeSphere {cluster.kubesphere_version} on "
                     f"Kubernetes {cluster.kubernetes_version}): {len(mine)} images, {check}")
        width = max(len(r["image"]) for r in mine)
        for r in mine:
            answer = answers.get(r["ref"])
            state = f"  [{answer.state}: {answer.detail}]" if answer else ""
            lines.append(f"  {r['image']:<{width}}  {r['usedBy'].split(':', 1)[1]}{state}")
            if "archive" in r:
                lines.append(f"  {'':<{width}}  from: the archive {r['archive']}")
            elif "sources" in r:
                where = ", ".join(r["sources"]) or "nowhere: no source, and no archive holds it"
                lines.append(f"  {'':<{width}}  from: {where}")
            if "labDigest" in r:
                used = r["labDigest"] or "nothing yet (the next up copies it)"
                lines.append(f"  {'':<{width}}  this lab uses: {used}")
    by_registry: dict[str, set[str]] = {}
    for r in rows:
        by_registry.setdefault(r["from"], set()).add(r["ref"])
    lines.append("\n" + f"{len({r['ref'] for r in rows})} distinct images, from " + ", ".join(
        f"{registry} ({len(refs)})" for registry, refs in sorted(by_registry.items())))
    withdrawn = registry_check.WITHDRAWN_NAMESPACE
    if any(r["image"].startswith(withdrawn) or any(images.canonical_ref(s).startswith(withdrawn)
                                                    for s in r.get("sources", ())) for r in rows):
        lines.append(f"Note: {registry_check.WITHDRAWAL_NOTE}. Point kslab at your copy of these images: set "
                     "kslab:imageSources, or kslab:registry (README 'Where the images come from').")
    return "\n".join(lines)


def archive_plan(spec: LabSpec) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """What `make images-save` puts in an archive: every image of every cluster under upstream's name, and where to
    look for it (the sources in order, or without sources the name the cluster would pull); and which clusters
    need each one."""
    candidates: dict[str, list[str]] = {}
    clusters_of: dict[str, list[str]] = {}
    sources = spec.image_sources
    for cluster in spec.clusters:
        upstream = images.plan(cluster.kubesphere_version, cluster.role, cluster.kubernetes_version, images.Naming())
        named = images.plan(cluster.kubesphere_version, cluster.role, cluster.kubernetes_version, spec.naming)
        for path, image in zip((i.ref for i in upstream), named, strict=True):
            if sources is not None and (sources.prefixes or sources.override_for(path)):
                found = sources.candidates(path)
            else:
                found = [image.ref]
            candidates.setdefault(path, [c for c in found if not c.startswith(image_sources.DOCKER_PREFIX)])
            clusters_of.setdefault(path, []).append(cluster.name)
    return candidates, clusters_of


def save_archive(spec: LabSpec, out: str) -> int:
    from kslab.steps import archives
    from kslab.steps.lab_registry import RegistryError
    try:
        archives.check_out(out)  # before any source is asked
    except RegistryError as error:
        print(f"kslab: nothing was saved: {error}", file=sys.stderr)
        return 1
    candidates, clusters_of = archive_plan(spec)
    located = registry_check.locate({p: c for p, c in candidates.items() if c})
    refusal = registry_check.report_sources(located, clusters_of)
    if refusal:
        print(f"kslab: nothing was saved. {refusal}", file=sys.stderr)
        return 1
    try:
        found = {path: source for path, asked in located.items() if (source := registry_check.found_at(asked))}
        size = archives.save(found, out,
                             progress=lambda line: print(line, file=sys.stderr))
    except RegistryError as error:
        print(f"kslab: nothing was saved: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # the disk filled, the folder went away: the temp file is gone with its folder
        print(f"kslab: nothing was saved: cannot write {out}: {error.strerror or error}. Fix: free space or name "
              "another file", file=sys.stderr)
        return 1
    print(f"wrote {out}: {len(located)} images, {size} bytes ({size / 1e6:.1f} MB); load it with "
          f"kslab:imageArchives: [{out}]")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kslab images", description=__doc__.split("\n")[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--project-dir", default=".")
    parser.add_argument("--check", action="store_true", help="ask each image's registry now (a manifest HEAD)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument("--save", metavar="FILE", help="write every planned image into one archive (images-save)")
    args = parser.parse_args(argv)
    spec = load_spec_or_say_why(args.project_dir, args.stack)
    if spec is None:
        return 2
    if args.save:
        return save_archive(spec, args.save)
    indexes = archive_indexes(spec, args.project_dir)
    rows = plan_rows(spec, indexes)
    answers = check_rows(spec, rows) if args.check else {}
    digests = lab_digests(spec)
    for r in rows:
        if r["ref"] in digests:
            r["labDigest"] = digests[r["ref"]]
        if r["ref"] in answers:
            r["answer"] = {"state": answers[r["ref"]].state, "detail": answers[r["ref"]].detail}
    print(json.dumps(rows, indent=2) if args.json else render_text(spec, args.stack, rows, answers, indexes))
    # as `up` judges: only images of clusters whose check is on can refuse the lab
    return 1 if any(r["checked"] and r["answer"]["state"] != registry_check.FOUND for r in rows if "answer" in r) \
        else 0


if __name__ == "__main__":
    sys.exit(main())
