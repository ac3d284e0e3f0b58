#!/bin/sh
# Each replica names itself after its role and container, so heartbeats,
# logs and `sluice status` tell the replicas apart.
export SLUICE_PROCESS_NAME="${SLUICE_ROLE:-sluice}-${HOSTNAME}"
exec "$@"
