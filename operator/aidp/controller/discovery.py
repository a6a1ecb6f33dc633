"""Finding the OPA replicas: explicit URLs (local control plane) or the ready endpoints of the OPA
Service (in a cluster), each verified against the webhook CA with the Service's DNS name."""

from __future__ import annotations

from pathlib import Path

from lightkube import AsyncClient
from lightkube.resources.discovery_v1 import EndpointSlice

from aidp.config import OperatorConfig
from aidp.controller.resources import list_all
from aidp.opa_loader import Replica


async def replicas(config: OperatorConfig, client: AsyncClient, ca_file: Path) -> list[Replica]:
    token = config.token()
    if config.opa_urls:
        return [Replica(url, token, ca_file) for url in config.opa_urls]
    hostname = f"{config.opa_service}.{config.namespace}.svc"
    found: list[Replica] = []
    async for eps in list_all(
        client,
        EndpointSlice,
        namespace=config.namespace,
        labels={"kubernetes.io/service-name": config.opa_service},
    ):
        for ep in eps.endpoints or []:
            if ep.conditions is not None and ep.conditions.ready is False:
                continue
            for address in ep.addresses or []:
                host = f"[{address}]" if ":" in address else address
                found.append(
                    Replica(f"https://{host}:{config.opa_port}", token, ca_file, server_hostname=hostname)
                )
    return sorted(found, key=lambda r: r.url)
