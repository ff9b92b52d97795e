"""kslab: a KubeSphere multi-cluster lab as one Pulumi stack. Each subpackage owns one lifetime (README, "How the
code is laid out"): model (pure), render (pure), program (Pulumi), steps (the plugin and its step processes), cli."""
