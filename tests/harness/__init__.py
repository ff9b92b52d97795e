"""Test harnesses: real etcd + kube-apiserver clusters (live_cluster) and fixtures that drive them."""
