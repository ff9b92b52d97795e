"""The tenant steps: apply a user, workspace or project on its cluster, read it back on refresh, delete it.

kslab keeps to what is its own: an object of a tenant's name that exists without this lab's label
(contract.LAB_LABEL) and that no earlier run of this step made is refused, never taken over; delete removes only
objects carrying the lab's label. Objects are written by server-side apply with kslab's field manager, so the fields
KubeSphere's controllers own (kslab/render/tenants.py lists them) are never written back: a no-change `up` runs no
step and a refresh reads nothing it could change. An object a re-run no longer declares (a user's former role
binding, a member removed from a workspace) is deleted, if it is the lab's.

A password never reaches a cluster in plain text: the step sends its bcrypt hash, which KubeSphere's user
controller takes as already encrypted (kubesphere@<tag>:pkg/controller/user/user_controller.go encryptPassword:
bcrypt.Cost > 0; v3.4.1's User CRD pattern allows `$2[ayb]$` + 56 characters), so neither the User nor the
FederatedUser KubeFed copies to the members ever holds the text. kslab's field manager then owns the hash, so every
apply sends it again: the cluster's own while it still matches the password, a new one when the password changed.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import string
import sys
from typing import Any

import bcrypt

from kslab.model import contract as names
from kslab.model import requests, tenants
from kslab.render import tenants as render
from kslab.steps import common
from kslab.steps.common import fail, log, wait_for

PLURALS = {kind: k.plural for kind, k in render.KINDS.items()}
_NAMED = re.compile(r"^(\w+) '([^']+)'$")
PASSWORD_LENGTH = 24


def generated_password(length: int = PASSWORD_LENGTH) -> str:
    """Random letters and digits with at least one lower-case letter, upper-case letter and digit: what every
    release's rule asks (tenants.password_problems)."""
    alphabet = string.ascii_letters + string.digits
    while True:
        password = "".join(secrets.choice(alphabet) for _ in range(length))
        if not tenants.password_problems(password, "v3.4.1") and not tenants.is_weak(password):
            return password


def step_gen_password() -> None:
    print(generated_password())


def _label(obj: dict[str, Any] | None) -> str | None:
    return ((obj or {}).get("metadata", {}).get("labels") or {}).get(names.LAB_LABEL)


def _what(obj: dict[str, Any]) -> str:
    return f"{obj['kind']} '{obj['metadata']['name']}'"


def password_hash(current: dict[str, Any] | None, password: str) -> str:
    """The bcrypt hash to send: the cluster's own while it is of `password`, else a new one (cost 10, Go's bcrypt
    DefaultCost, and its `$2a$` prefix)."""
    stored = ((current or {}).get("spec") or {}).get("password") or ""
    try:
        if bcrypt.checkpw(password.encode(), stored.encode()):
            return str(stored)
    except ValueError:  # not a bcrypt hash
        pass
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(10, prefix=b"2a")).decode()


def _foreign(found: dict[str, Any] | None, lab_id: str, in_state: bool) -> bool:
    """An object the lab did not make: no lab label at all, or another lab's (unless this step made it before, under
    a lab id of the checkout's earlier place)."""
    if found is None:
        return False
    label = _label(found)
    return label is None or (label != lab_id and not in_state)


def step_tenant_apply() -> None:
    asked, knobs = common.request(requests.TenantObjects), common.knobs()
    label = f"cluster '{asked.cluster}'"
    kube = common.kube(names.ENV_KUBECONFIG, label)
    for group, version, plural, name in asked.wait_for or []:
        def there(api_version=f"{group}/{version}", plural=plural, name=name):
            return kube.get_object(api_version, plural, name) is not None, "not there yet", True
        found, elapsed, _ = wait_for(there, asked.timeout, knobs.poll_seconds, knobs.progress_seconds,
                                     f"{plural} '{name}' on {label}")
        if not found:
            fail(f"{plural} '{name}' is not on {label} after {elapsed:.0f}s: KubeFed of its host has not placed it "
                 "there. Fix: check the join is Ready (`make status`), then run `up` again")
    in_state = os.environ.get(names.ENV_IN_STATE) == "1"
    current = {id(o): kube.get_object(o["apiVersion"], PLURALS[o["kind"]], o["metadata"]["name"])
               for o in asked.objects}
    foreign = [o for o in asked.objects if _foreign(current[id(o)], asked.lab_id, in_state)]
    if foreign:  # checked before anything is written
        fail(f"{', '.join(_what(o) for o in foreign)} already exist on {label} and are not this lab's (no "
             f"{names.LAB_LABEL}={asked.lab_id} label); kslab does not take over objects it did not make. Fix: "
             "rename the tenant in the stack file, or remove the object yourself if it is a leftover")
    for obj in asked.objects:
        body = json.loads(json.dumps(obj))
        if obj["kind"] == "User" and asked.password:
            body["spec"]["password"] = password_hash(current[id(obj)], asked.password)
        kube.apply_object(body, PLURALS[obj["kind"]], names.FIELD_MANAGER)
        log(f"applied {_what(obj)} on {label}")
    _remove_undeclared(kube, asked, label, knobs)
    for obj in asked.objects:
        if obj["kind"] == "User":
            _wait_active(kube, obj["metadata"]["name"], asked, knobs, label)
    print(_result(asked))


def _result(asked: requests.TenantObjects) -> str:
    """The step's stdout: what it made where (the same from apply and read, so a refresh changes nothing)."""
    return json.dumps({"cluster": asked.cluster, "objects": [_what(o) for o in asked.objects]})


def _wait_active(kube, name: str, asked: requests.TenantObjects, knobs: requests.UserKnobs, label: str) -> None:
    """Until KubeSphere's user controller has hashed the password and made the user Active (syncUserStatus)."""
    def probe():
        user = kube.get_object("iam.kubesphere.io/v1alpha2", "users", name) or {}
        state = (user.get("status") or {}).get("state") or "no state yet"
        return state == "Active", state, True
    done, elapsed, state = wait_for(probe, asked.timeout, knobs.poll_seconds, knobs.progress_seconds,
                                    f"user '{name}' on {label}")
    if not done:
        fail(f"user '{name}' on {label} is not Active after {elapsed:.0f}s ({state}): KubeSphere's user controller "
             "has not taken it. Fix: check ks-controller-manager runs on the cluster, then run `up` again")


def _remove_undeclared(kube, asked: requests.TenantObjects, label: str, knobs: requests.UserKnobs) -> None:
    """What the step's last run made and the stack no longer declares (its stored result, from the plugin)."""
    try:
        before = json.loads(os.environ.get(names.ENV_STATE_OBJECTS) or "[]")
    except ValueError:
        before = []
    wanted = {_what(o) for o in asked.objects}
    gone = []
    for text in before:
        match = _NAMED.match(str(text))
        if match is None or text in wanted or match.group(1) not in PLURALS:
            continue
        kind, name = match.groups()
        obj = {"apiVersion": render.KINDS[kind].api_version, "kind": kind, "metadata": {"name": name}}
        if _delete_if_ours(kube, obj, asked.lab_id, label):
            gone.append(obj)
    _wait_gone(kube, gone, asked, knobs, label)


def _delete_if_ours(kube, obj: dict[str, Any], lab_id: str, label: str) -> bool:
    found = kube.get_object(obj["apiVersion"], PLURALS[obj["kind"]], obj["metadata"]["name"])
    if found is None:
        return False
    if _label(found) != lab_id:
        log(f"left {_what(obj)} on {label}: it is not this lab's")
        return False
    kube.delete_object(obj["apiVersion"], PLURALS[obj["kind"]], obj["metadata"]["name"])
    log(f"deleting {_what(obj)} on {label}")
    return True


def _wait_gone(kube, deleted: list[dict[str, Any]], asked: requests.TenantObjects, knobs: requests.UserKnobs,
               label: str) -> None:
    """Until KubeSphere's finalizers let each deleted object go, and on a host KubeFed has removed its copies from
    the members (its Federated object, whose sync finalizer waits for that, is gone too)."""
    def left() -> list[str]:
        out = []
        for obj in deleted:
            name = obj["metadata"]["name"]
            found = kube.get_object(obj["apiVersion"], PLURALS[obj["kind"]], name)
            if found is not None:
                finalizers = ", ".join(found["metadata"].get("finalizers") or []) or "none"
                out.append(f"{_what(obj)} (finalizers: {finalizers})")
            elif (federated := render.KINDS[obj["kind"]].federated) and kube.get_object(render.FEDERATED_API,
                                                                                          federated, name):
                out.append(f"the Federated{obj['kind']} '{name}' (KubeFed removing its copies from the members)")
        return out
    if not deleted:
        return
    remaining, elapsed, summary = wait_for(lambda: (not (pending := left()), "; ".join(pending), []),
                                           asked.timeout, knobs.poll_seconds, knobs.progress_seconds,
                                           f"delete on {label}")
    if remaining is None:
        fail(f"still on {label} after {elapsed:.0f}s: {summary}. KubeSphere's controllers and KubeFed remove those "
             "(are ks-controller-manager and kubefed running?). Fix: bring them back and run again")
    for obj in deleted:
        log(f"deleted {_what(obj)} on {label}")


def step_tenant_read() -> None:
    """Refresh: gone (the step is dropped and the next `up` applies it again) when an object is no longer there or
    no longer the lab's; otherwise nothing changes, whatever the controllers have added."""
    asked = common.request(requests.TenantObjects)
    kube = common.kube(names.ENV_KUBECONFIG, f"cluster '{asked.cluster}'")
    for obj in asked.objects:
        found = kube.get_object(obj["apiVersion"], PLURALS[obj["kind"]], obj["metadata"]["name"])
        if found is None or _label(found) != asked.lab_id or found["metadata"].get("deletionTimestamp"):
            log(f"{_what(obj)} is no longer this lab's on cluster '{asked.cluster}'")
            sys.exit(names.GONE_EXIT)
    print(_result(asked))


def step_tenant_delete() -> None:
    """Delete the lab's objects, last first, and wait (bounded) until KubeSphere's finalizers let them go and KubeFed
    has removed their copies. An object of the name that is not the lab's (made by hand after the lab's was
    removed) is left alone."""
    asked, knobs = common.request(requests.TenantObjects), common.knobs()
    label = f"cluster '{asked.cluster}'"
    kube = common.kube(names.ENV_KUBECONFIG, label)
    deleted = [obj for obj in reversed(asked.objects) if _delete_if_ours(kube, obj, asked.lab_id, label)]
    _wait_gone(kube, deleted, asked, knobs, label)
