"""kslab policy pack entry point: `pulumi preview --policy-pack policies`.

Only assembles the policies; constructing a PolicyPack starts the policy server.
"""
import pulumi_policy.policy as _sdk
from pulumi_policy import PolicyPack

from kslab_policies import POLICIES
from kslab_policies.facts import props_from_rpc

# pulumi-policy unwraps secrets before validation; keep the marker so kslab-plaintext-secret
# can tell a secret kubeconfig from a plaintext one.
_sdk.deserialize_properties = props_from_rpc

PolicyPack(name="kslab", policies=POLICIES)
