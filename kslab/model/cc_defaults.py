"""The default ClusterConfiguration spec of each KubeSphere release kslab supports: kslab's own facts
table, read from ks-installer at the release tag (comments dropped, keys and values as shipped).

ks-installer hands the cc spec to its playbooks as Ansible extra vars (env/cmdline: `-e @ks-config.json`),
and a top-level key replaces the role default of the same name outright (no ansible.cfg, so
hash_behaviour=replace). The roles carry no usable defaults for most keys: the monitoring playbook always
renders `etcd.endpointIps` / `etcd.port` (roles/ks-monitor/templates/prometheus-endpointsEtcd.yaml.j2),
the common role reads `devops.enabled`, `logging.enabled`, ... unguarded (roles/common/tasks/
common-install.yaml). So kslab renders every key below and lays its own values over them
(`render.cluster_configuration`).

Sources:
- v3.2.1: kubesphere/ks-installer@v3.2.1:deploy/cluster-configuration.yaml
- v3.4.1: kubesphere/ks-installer@v3.4.1:deploy/cluster-configuration.yaml
"""
from __future__ import annotations

import copy
from typing import Any

# kubesphere/ks-installer@v3.2.1:deploy/cluster-configuration.yaml, spec
_V3_2_1: dict[str, Any] = {'persistence': {'storageClass': ''},
 'authentication': {'jwtSecret': ''},
 'local_registry': '',
 'etcd': {'monitoring': False, 'endpointIps': 'localhost', 'port': 2379, 'tlsEnable': True},
 'common': {'core': {'console': {'enableMultiLogin': True, 'port': 30880, 'type': 'NodePort'}},
            'redis': {'enabled': False, 'volumeSize': '2Gi'},
            'openldap': {'enabled': False, 'volumeSize': '2Gi'},
            'minio': {'volumeSize': '20Gi'},
            'monitoring': {'endpoint': 'http://prometheus-operated.kubesphere-monitoring-system.svc:9090',
                           'GPUMonitoring': {'enabled': False}},
            'gpu': {'kinds': [{'resourceName': 'nvidia.com/gpu', 'resourceType': 'GPU', 'default': True}]},
            'es': {'logMaxAge': 7,
                   'elkPrefix': 'logstash',
                   'basicAuth': {'enabled': False, 'username': '', 'password': ''},
                   'externalElasticsearchUrl': '',
                   'externalElasticsearchPort': ''}},
 'alerting': {'enabled': False},
 'auditing': {'enabled': False},
 'devops': {'enabled': False,
            'jenkinsMemoryLim': '2Gi',
            'jenkinsMemoryReq': '1500Mi',
            'jenkinsVolumeSize': '8Gi',
            'jenkinsJavaOpts_Xms': '512m',
            'jenkinsJavaOpts_Xmx': '512m',
            'jenkinsJavaOpts_MaxRAM': '2g'},
 'events': {'enabled': False},
 'logging': {'enabled': False, 'containerruntime': 'docker', 'logsidecar': {'enabled': True, 'replicas': 2}},
 'metrics_server': {'enabled': False},
 'monitoring': {'storageClass': '', 'gpu': {'nvidia_dcgm_exporter': {'enabled': False}}},
 'multicluster': {'clusterRole': 'none'},
 'network': {'networkpolicy': {'enabled': False}, 'ippool': {'type': 'none'}, 'topology': {'type': 'none'}},
 'openpitrix': {'store': {'enabled': False}},
 'servicemesh': {'enabled': False},
 'kubeedge': {'enabled': False,
              'cloudCore': {'nodeSelector': {'node-role.kubernetes.io/worker': ''},
                            'tolerations': [],
                            'cloudhubPort': '10000',
                            'cloudhubQuicPort': '10001',
                            'cloudhubHttpsPort': '10002',
                            'cloudstreamPort': '10003',
                            'tunnelPort': '10004',
                            'cloudHub': {'advertiseAddress': [''], 'nodeLimit': '100'},
                            'service': {'cloudhubNodePort': '30000',
                                        'cloudhubQuicNodePort': '30001',
                                        'cloudhubHttpsNodePort': '30002',
                                        'cloudstreamNodePort': '30003',
                                        'tunnelNodePort': '30004'}},
              'edgeWatcher': {'nodeSelector': {'node-role.kubernetes.io/worker': ''},
                              'tolerations': [],
                              'edgeWatcherAgent': {'nodeSelector': {'node-role.kubernetes.io/worker': ''},
                                                   'tolerations': []}}}}

# kubesphere/ks-installer@v3.4.1:deploy/cluster-configuration.yaml, spec
_V3_4_1: dict[str, Any] = {'persistence': {'storageClass': ''},
 'authentication': {'jwtSecret': ''},
 'local_registry': '',
 'etcd': {'monitoring': False, 'endpointIps': 'localhost', 'port': 2379, 'tlsEnable': True},
 'common': {'core': {'console': {'enableMultiLogin': True, 'port': 30880, 'type': 'NodePort'}},
            'redis': {'enabled': False, 'enableHA': False, 'volumeSize': '2Gi'},
            'openldap': {'enabled': False, 'volumeSize': '2Gi'},
            'minio': {'volumeSize': '20Gi'},
            'monitoring': {'endpoint': 'http://prometheus-operated.kubesphere-monitoring-system.svc:9090',
                           'GPUMonitoring': {'enabled': False}},
            'gpu': {'kinds': [{'resourceName': 'nvidia.com/gpu', 'resourceType': 'GPU', 'default': True}]},
            'es': {'enabled': False,
                   'logMaxAge': 7,
                   'elkPrefix': 'logstash',
                   'basicAuth': {'enabled': False, 'username': '', 'password': ''},
                   'externalElasticsearchHost': '',
                   'externalElasticsearchPort': ''},
            'opensearch': {'enabled': True,
                           'logMaxAge': 7,
                           'opensearchPrefix': 'whizard',
                           'basicAuth': {'enabled': True, 'username': 'admin', 'password': 'admin'},
                           'externalOpensearchHost': '',
                           'externalOpensearchPort': '',
                           'dashboard': {'enabled': False}}},
 'alerting': {'enabled': False},
 'auditing': {'enabled': False},
 'devops': {'enabled': False,
            'jenkinsCpuReq': 0.5,
            'jenkinsCpuLim': 1,
            'jenkinsMemoryReq': '4Gi',
            'jenkinsMemoryLim': '4Gi',
            'jenkinsVolumeSize': '16Gi'},
 'events': {'enabled': False, 'ruler': {'enabled': True, 'replicas': 2}},
 'logging': {'enabled': False, 'logsidecar': {'enabled': True, 'replicas': 2}},
 'metrics_server': {'enabled': False},
 'monitoring': {'storageClass': '',
                'node_exporter': {'port': 9100},
                'gpu': {'nvidia_dcgm_exporter': {'enabled': False}}},
 'multicluster': {'clusterRole': 'none'},
 'network': {'networkpolicy': {'enabled': False}, 'ippool': {'type': 'none'}, 'topology': {'type': 'none'}},
 'openpitrix': {'store': {'enabled': False}},
 'servicemesh': {'enabled': False,
                 'istio': {'components': {'ingressGateways': [{'name': 'istio-ingressgateway',
                                                               'enabled': False}],
                                          'cni': {'enabled': False}}}},
 'edgeruntime': {'enabled': False,
                 'kubeedge': {'enabled': False,
                              'cloudCore': {'cloudHub': {'advertiseAddress': ['']},
                                            'service': {'cloudhubNodePort': '30000',
                                                        'cloudhubQuicNodePort': '30001',
                                                        'cloudhubHttpsNodePort': '30002',
                                                        'cloudstreamNodePort': '30003',
                                                        'tunnelNodePort': '30004'}},
                              'iptables-manager': {'enabled': True, 'mode': 'external'}}},
 'gatekeeper': {'enabled': False},
 'terminal': {'timeout': 600}}

DEFAULT_SPECS: dict[str, dict[str, Any]] = {"v3.2.1": _V3_2_1, "v3.4.1": _V3_4_1}


def default_spec(ks_version: str) -> dict[str, Any]:
    """A fresh copy of the release's default cc spec (callers may change it)."""
    return copy.deepcopy(DEFAULT_SPECS[ks_version])
