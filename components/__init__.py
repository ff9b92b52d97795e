"""The Pulumi component resources of a lab (the design card's `components/`): the Lab, each kind or existing cluster,
the ClusterConfiguration role, the KubeSphere install, the KubeFed join, the developer workspace and the apply-time
step resources. They wire what kslab/model validates and kslab/render renders; kslab/steps runs the steps."""
