module kslab/tools/kind/node-image

go 1.22
