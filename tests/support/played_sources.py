"""A source registry played on this machine, holding a stand-in under upstream's name for every image a kind lab's
plan names (the installer's one runs in a pod), and a lab registry of the test's own that kslab fills from it."""
from __future__ import annotations

import collections
import time

from kslab.model import contract, image_sources, images, versions
from kslab.model.spec import parse_lab
from kslab.steps import lab_registry
from tests.support.registry import (
    SourceRegistry,
    build_stand_in_program,
    free_port,
    lab_images_counts,
    remove_lab_registry,
)


class PlayedSources:
    """A source registry holding a stand-in for every image of the lab's plan under upstream's name (the
    installer's one runs), and the lab's settings pointing kslab at it, with a lab registry of the test's own."""

    def __init__(self, lab, tmp_path):
        self.registry = image_sources.LabRegistry("kt-lab-registry", free_port())
        assert lab_registry.container_state(self.registry) is None, "a lab registry of a crashed run is left"
        self.source = SourceRegistry(str(tmp_path / "source"))  # from here on, close() stops it
        spec = parse_lab({k.split(":", 1)[1]: v for k, v in lab.config.items()})
        self.paths = sorted({i.ref for c in spec.clusters
                             for i in images.plan(c.kubesphere_version, c.role, c.kubernetes_version, images.Naming())})
        self.installer = images.installer_image(spec.clusters[0].kubesphere_version, images.Naming())
        program = build_stand_in_program(str(tmp_path))
        for path in self.paths:
            ref = f"{self.source.address}/{path}"
            if path == self.installer:
                self.source.push_runnable(ref, program)
            else:
                self.source.push_stand_in(ref)
        self.program = program
        self.point(lab)
        self.source.mark()

    def point(self, lab) -> None:
        """The lab's settings: the played source, and the test's own lab registry."""
        lab.set_config("kslab:imageSources", [self.source.address])
        lab.set_config("kslab:labRegistry", {"name": self.registry.name, "hostPort": self.registry.host_port})

    def pulls(self) -> collections.Counter:
        """GETs of each image's manifest (a copy: crane fetches by the digest a HEAD answered), by repository, and
        every blob GET (bytes fetched)."""
        counted = collections.Counter()
        for method, uri, _ in self.source.requests():
            if method == "GET" and "/manifests/" in uri:
                counted[uri[len("/v2/"):].partition("/manifests/")[0]] += 1
            elif method == "GET" and "/blobs/" in uri:
                counted["<blobs>"] += 1
        return counted

    def root(self, lab) -> str:
        """Where the lab's nodes pull from: its own repositories in the lab registry."""
        return self.registry.lab_root(contract.lab_id(lab.stack, lab.project.dir))  # the copy the run imports

    def check_first_up(self, lab, out: str) -> None:
        pulls = self.pulls()
        repositories = {p.rsplit(":", 1)[0] for p in self.paths}
        assert {r: pulls[r] for r in repositories} == {r: 1 for r in repositories}, \
            "each image is fetched from the source exactly once, however many clusters pull it"
        assert lab_images_counts(out)["fetched"] == len(self.paths)
        root = self.root(lab)
        for name in lab.names:
            cc = lab.custom(name).get_namespaced_custom_object(
                "installer.kubesphere.io", "v1alpha1", "kubesphere-system", "clusterconfigurations", "ks-installer")
            assert cc["spec"]["local_registry"] == root, "the lab's own repositories, no other lab's"
            pod = self._installer_running(lab, name)
            assert pod.spec.containers[0].image == f"{root}/{self.installer}"
            assert pod.status.container_statuses[0].image_id.startswith(
                f"{root}/kubesphere/ks-installer@sha256:"), "pulled from the lab's own repository"

    @staticmethod
    def _installer_running(lab, name):
        deadline = time.monotonic() + 180
        while True:
            # the installer Deployment's pod label is the release's (ks-install at v3.2.1, ks-installer at v3.4.1)
            label = versions.KUBESPHERE_RELEASES[lab.kubesphere_version(name)].installer_pod_label
            pods = lab.core(name).list_namespaced_pod("kubesphere-system", label_selector=f"app={label}").items
            if pods and pods[0].status.phase == "Running":
                return pods[0]
            if time.monotonic() > deadline:
                detail = [(p.status.phase, [(c.state.waiting.reason, c.state.waiting.message) for c in
                                            p.status.container_statuses or [] if c.state.waiting]) for p in pods]
                if not pods:  # why the Deployment made none: the namespace's events say
                    events = lab.core(name).list_namespaced_event("kubesphere-system").items
                    detail = [(e.involved_object.kind, e.reason, (e.message or "")[:300]) for e in events[-12:]]
                raise AssertionError(f"the installer pod of {name} never ran from the lab registry: {detail}")
            time.sleep(2)

    def close(self) -> None:
        self.source.close()
        remove_lab_registry(self.registry)
