"""The Pulumi program: the Lab component and its clusters, installs, roles and joins."""
