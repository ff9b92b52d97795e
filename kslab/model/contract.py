"""The names the program, the steps, the policy pack and the tests share, defined once.

Pure data, no imports beyond the standard library: the policy pack imports it too.
"""
from __future__ import annotations

import hashlib
import os
import re
from enum import StrEnum

# The checkout itself, also when tools/lab.sh runs the program from a scratch project that links to it: paths a
# stack gives relative to the project (kubeconfigPath, a workspace dir) stay relative to the checkout, and the
# steps run from it.
PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))


def lab_id(stack: str, project_dir: str = PROJECT_DIR) -> str:
    """The identity of one lab on this machine: its stack name and the checkout it runs from (two clones may run
    stacks of the same name side by side). It marks what the lab owns on the machine: its kind clusters' nodes
    (the node label LAB_LABEL) and its repositories in the shared lab registry. A Kubernetes label value and a
    registry path component: lower-case alphanumerics and '-', at most 63 characters."""
    # The digest covers the exact stack name: `lab_a`, `lab-a` and `Lab.A` read alike but are three labs.
    digest = hashlib.sha256(f"{os.path.realpath(project_dir)}\0{stack}".encode()).hexdigest()[:10]
    readable = re.sub(r"[^a-z0-9]+", "-", stack.lower()).strip("-")[:40] or "stack"
    return f"{readable}-{digest}"


# The node label kslab gives every node of a kind cluster it creates (value: lab_id): what it may adopt again.
LAB_LABEL = "kslab.io/lab"
# Set by the step plugin for every step: the stack the step belongs to (from the resource's URN).
ENV_STACK_NAME = "KSLAB_STACK"
# Set by the step plugin when it runs a step whose resource is already in the stack's state (an update).
ENV_IN_STATE = "KSLAB_STEP_IN_STATE"
# Set by the step plugin from the stack's state: a fingerprint of the certificate authority of the cluster the step's
# stored kubeconfig names (kubeconfig.ca_fingerprint), which tells that cluster from another made under its name.
ENV_STATE_CA = "KSLAB_STEP_STATE_CA"
# Set by the step plugin from the stack's state: the objects a tenant step made on its last run (its stored result's
# "objects", JSON), so a re-run removes what the stack no longer declares (a user's former role binding).
ENV_STATE_OBJECTS = "KSLAB_STEP_STATE_OBJECTS"
# The namespace of kslab's component resource types (kslab:lab:Lab, kslab:lab:KindCluster, ...).
TYPE_PREFIX = "kslab:lab"

# --- policies --------------------------------------------------------------------------------
class PolicyName(StrEnum):
    """The policy pack's policies. A config problem tagged with one is the same rule the pack checks on what the
    program registers (kslab/model/lab_rules.py), so validationMode 'warn' can leave it to that policy."""
    REGISTERED_INPUTS = "kslab-registered-inputs"
    JWT_SECRET_MISMATCH = "kslab-jwt-secret-mismatch"
    INVALID_ROLE = "kslab-invalid-role"
    JOIN_INSECURE_TLS = "kslab-join-insecure-tls"
    JOIN_LOOPBACK_SERVER = "kslab-join-loopback-server"
    UNSUPPORTED_VERSIONS = "kslab-unsupported-versions"
    DUPLICATE_PORT_OR_NAME = "kslab-duplicate-port-or-name"
    PLAINTEXT_SECRET = "kslab-plaintext-secret"
    MEMBER_MULTIPLE_HOSTS = "kslab-member-multiple-hosts"
    DUAL_HOST_EXPERIMENT = "kslab-dual-host-experiment"
    DUPLICATE_HOST_CLUSTER_NAME = "kslab-duplicate-host-cluster-name"
    MEMORY_BUDGET = "kslab-memory-budget"
    UNPINNED_VERSIONS = "kslab-unpinned-versions"
    INOTIFY_NOTE = "kslab-inotify-note"
    USER_ON_SHARED_MEMBER = "kslab-user-on-shared-member"
    WORKSPACE_UNJOINED_CLUSTER = "kslab-workspace-unjoined-cluster"
    WEAK_ADMIN_PASSWORD = "kslab-weak-admin-password"


# --- step resources --------------------------------------------------------------------------
# Every apply-time step is a resource of kslab's own provider plugin (provider/, declared in
# Pulumi.yaml), one type per kind of step, so previews and policies can tell them apart.
STEP_PACKAGE = "kslab"
STEP_MODULE = "steps"
# The one table of steps, each with its type and request: kslab/model/step_table.py.

# What every step was before it had its own type (Pulumi's dynamic provider). Steps alias it, so a stack
# created then upgrades in place.
LEGACY_STEP_TYPE = "pulumi-python:dynamic:Resource"


# The exit status of a read step that found its object gone (a refresh then drops the step from the state).
GONE_EXIT = 3
# Where the unjoin keeps the v3.4 Cluster webhook's configurations while it has them out of the way (a ConfigMap
# in kubesphere-system on the host), so a run killed in that window is restored by the next one.
SAVED_WEBHOOKS_CONFIG_MAP = "kslab-saved-webhook-configurations"
# The cc's label that names the KubeSphere release it is for (ks-installer's own deploy/cluster-configuration.yaml
# sets it; the program writes it, the policy pack reads it).
CC_VERSION_LABEL = "version"


# --- step environment ------------------------------------------------------------------------
# Set by the program for a step (its own cluster only; a join step gets its member's and host's), each the field
# of a typed request (kslab/model/requests.py) that says what its value is and how it is written.
ENV_CLUSTER = "KSLAB_CLUSTER"
ENV_ROLE = "KSLAB_ROLE"
ENV_KS_VERSION = "KSLAB_KS_VERSION"
ENV_KUBECONFIG = "KSLAB_KUBECONFIG"
ENV_NODE_IMAGE = "KSLAB_NODE_IMAGE"
ENV_KIND_CONFIG = "KSLAB_KIND_CONFIG"
ENV_KIND_WAIT = "KSLAB_KIND_WAIT"
ENV_PLAN = "KSLAB_PLAN"
ENV_IMAGES = "KSLAB_IMAGES"  # the image plan the image check asks the registries for (requests.ImageCheck)
# The lab registry, what goes into it (requests.LabImages), the source registries' credentials (a secret).
ENV_LAB_REGISTRY = "KSLAB_LAB_REGISTRY"
ENV_LAB_IMAGES = "KSLAB_LAB_IMAGES"
ENV_LAB_ID = "KSLAB_LAB_ID"  # the lab's own repositories in the lab registry: labs/<lab id>/... (lab_id)
ENV_LAB_ARCHIVES = "KSLAB_LAB_ARCHIVES"  # image archives to load from, absolute paths (JSON list)
ENV_REGISTRY_AUTH = "KSLAB_REGISTRY_CREDENTIALS"
ENV_TIMEOUT = "KSLAB_TIMEOUT"
ENV_WAIT_KEYS = "KSLAB_WAIT_KEYS"
ENV_BASELINE = "KSLAB_BASELINE"
ENV_MEMBER = "KSLAB_MEMBER"
ENV_HOST = "KSLAB_HOST"
ENV_MEMBER_KUBECONFIG = "KSLAB_MEMBER_KUBECONFIG"
ENV_HOST_KUBECONFIG = "KSLAB_HOST_KUBECONFIG"
ENV_JOIN_KUBECONFIG = "KSLAB_JOIN_KUBECONFIG"
ENV_ALLOW_LOOPBACK = "KSLAB_ALLOW_LOOPBACK"
ENV_UNJOIN_TIMEOUT = "KSLAB_UNJOIN_TIMEOUT"
ENV_DEV_COMPONENT = "KSLAB_DEV_COMPONENT"
ENV_DEV_DIR = "KSLAB_DEV_DIR"
ENV_DEV_KEEP_FILES = "KSLAB_DEV_KEEP_FILES"
ENV_DEV_CLUSTER_ADDRESS = "KSLAB_DEV_CLUSTER_ADDRESS"  # the API server's host as the lab's hosts reach it
# A tenant step (requests.TenantObjects): the objects it applies (JSON list), a user's password (a secret), the
# KubeSphere objects it waits for first (JSON list of [group, version, plural, name]).
ENV_TENANT_OBJECTS = "KSLAB_TENANT_OBJECTS"
ENV_TENANT_PASSWORD = "KSLAB_TENANT_PASSWORD"
ENV_TENANT_WAIT_FOR = "KSLAB_TENANT_WAIT_FOR"
# Set by the user (or a test) around `pulumi up`/`destroy`, and passed on to the steps.
ENV_FORCE_UNJOIN = "KSLAB_FORCE_UNJOIN"
ENV_POLL_SECONDS = "KSLAB_POLL_SECONDS"
ENV_PROGRESS_SECONDS = "KSLAB_PROGRESS_SECONDS"
ENV_JWT_READ_SECONDS = "KSLAB_JWT_READ_SECONDS"
ENV_STALE_WAIT = "KSLAB_STALE_WAIT"
# The cluster a user says is gone for good, so its dev workspace is forgotten with nothing given back.
ENV_DEV_GONE = "KSLAB_DEV_GONE"
# Set by the user to see the step provider's own tracebacks (kslab bugs only).
ENV_DEBUG = "KSLAB_DEBUG"
# Every variable a step may be given: the ENV_* names above, nothing else (the step plugin drops any other name a
# request carries, such as LD_PRELOAD).
STEP_ENV = frozenset(value for key, value in dict(globals()).items() if key.startswith("ENV_"))
USER_STEP_ENV = (ENV_FORCE_UNJOIN, ENV_POLL_SECONDS, ENV_PROGRESS_SECONDS, ENV_JWT_READ_SECONDS, ENV_STALE_WAIT,
                 ENV_DEBUG, ENV_DEV_GONE)
# What a step's programs (python, kind, docker) need from the machine; nothing else is passed on (never
# PULUMI_* such as the passphrase, never the user's KUBECONFIG).
MACHINE_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TMPDIR", "TZ", "XDG_RUNTIME_DIR", "XDG_STATE_HOME",
               "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY",
               "KIND_EXPERIMENTAL_PROVIDER", "CONTAINER_HOST",
               "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
               "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
# A step variable whose name holds one of these words carries a secret (a kubeconfig, a token): it is kept
# secret in the state, checked so by the policy pack, and blotted out of any message a step prints.
SECRET_ENV_WORDS = ("KUBECONFIG", "JWT", "TOKEN", "SECRET", "CREDENTIALS", "PASSWORD")


def is_secret_env(name: str) -> bool:
    return any(word in name for word in SECRET_ENV_WORDS)

# The file in a developer workspace folder that names the workspace it belongs to and records what kslab wrote
# there (kslab/steps/workspace_fs.py), so dev-down removes only those files.
WORKSPACE_MARKER = ".kslab-workspace"

# --- labels and annotations on the objects kslab applies ---------------------------------------
CLUSTER_LABEL = "kslab.io/cluster"
HOST_LABEL = "kslab.io/host"
MEMBER_LABEL = "kslab.io/member"
K8S_VERSION_ANNOTATION = "kslab.io/kubernetes-version"
JWT_SOURCE_ANNOTATION = "kslab.io/jwt-secret-source"
MULTI_HOST_ANNOTATION = "kslab.io/allow-multiple-hosts"
LOOPBACK_ANNOTATION = "kslab.io/loopback-join-reason"
MEMBER_UID_ANNOTATION = "kslab.io/member-kube-system-uid"
# The field manager of every tenant object kslab applies (server-side apply): the fields it owns, and no others.
FIELD_MANAGER = "kslab"
