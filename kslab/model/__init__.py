"""The lab model, pure: typed config, defaults, validation, releases, images and the shared contract."""
