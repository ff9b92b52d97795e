module kslab/tools/docker/runtime-wrapper

go 1.22
