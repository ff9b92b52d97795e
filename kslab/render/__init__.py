"""Pure renderers: kind config, installer objects, ClusterConfiguration, Cluster, workspace files."""
