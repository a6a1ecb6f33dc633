"""docs/providers.md, generated from the provider catalog (`hack/gen-providers` writes it; a unit
test checks the file equals this output, so the page cannot drift from the catalog)."""

from __future__ import annotations

from collections.abc import Mapping

from aidp.catalog import Catalog, Country, Endpoint, Fact, Provider

FACT_TITLES = {
    "legalEntity": "Legal entity",
    "processorTerms": "Processor terms",
    "apiRetention": "Default API retention",
    "zeroDataRetention": "Zero data retention",
    "trainsOnApiData": "API data trains models by default",
}


def _endpoint(e: Endpoint) -> str:
    return f"`{e.host}`" if e.port == 443 else f"`{e.host}:{e.port}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _source(fact: Fact) -> str:
    return "unverified" if not fact.verified else f"[source]({fact.source})"


def _fact(name: str, fact: Fact) -> str:
    value = fact.value
    if fact.available:
        value = f"{fact.available}: {value}"
    note = f" ({fact.note})" if fact.note else ""
    return f"| {FACT_TITLES[name]} | {_cell(value + note)} | {_source(fact)} |"


def _country(country: Country | None) -> str:
    if country is None:
        return "undetermined"
    return f"{_cell(country.name)}{' (EEA)' if country.eea else ''}"


def _provider(p: Provider, regions: Mapping[str, Country]) -> list[str]:
    out = [f"## `{p.name}`: {p.display_name}", ""]
    if p.endpoints:
        where = f" Records: processed in {_country(p.global_country)}." if p.global_country else ""
        out.append(f"Endpoints: {', '.join(_endpoint(e) for e in p.endpoints)}.{where}")
    else:
        out.append("Endpoints: none in the catalog.")
    if p.endpoints_note:
        out.append(_cell(p.endpoints_note))
    out.append("")
    if p.residency:
        out += [
            "| `dataResidency` | endpoints (replace the provider's) | country (records) |",
            "|---|---|---|",
        ]
        out += [
            f"| `{region}` | {', '.join(_endpoint(e) for e in eps)} | {_country(regions.get(region))} |"
            for region, eps in p.residency
        ]
        source = p.residency_source
        note = f" {_cell(p.residency_note)}" if p.residency_note else ""
        out += ["", f"Regions: {source if source == 'unverified' else f'[source]({source})'}.{note}", ""]
    else:
        out += ["No data-residency regions: a policy naming this provider sets no `dataResidency`.", ""]
    d = p.detection
    out.append(
        "Shadow-AI detection: env names "
        + (", ".join(f"`{g}`" for g in d.env) or "none")
        + "; credentials in "
        + (", ".join(f"`{n}`" for n in d.credential_env) or "none")
        + "; hosts "
        + (", ".join(f"`{h}`" for h in d.hosts) or "none")
        + "."
        + (f" {_cell(d.note)}." if d.note else "")
    )
    out += ["", "| Fact | Value | Source |", "|---|---|---|"]
    out += [_fact(name, fact) for name, fact in p.facts.items()]
    out.append("")
    return out


def markdown(cat: Catalog) -> str:
    lines = [
        "# AI providers",
        "",
        "<!-- generated from operator/aidp/catalog/providers.yaml by hack/gen-providers: do not edit -->",
        "",
        "The provider catalog (`operator/aidp/catalog/providers.yaml`, shipped in the package) lists the",
        "providers an AIDataPolicy may name in `spec.provider`: their endpoints and data-residency",
        "regions (what egress opens), what the audit's shadow-AI detector looks for, and the facts a",
        "record of processing needs, each with its public source. A fact marked *unverified* could not",
        "be confirmed from a public source when the catalog was written: check it with the provider",
        "before you rely on it. Providers change their terms; the sources say what they said when read",
        "(2026-12-01).",
        "",
        "Override the catalog with `--provider-catalog FILE` (`aidp run`, `render`, `check`, `audit`;",
        "environment `AIDP_PROVIDER_CATALOG`). The file is validated at start: a malformed one is",
        "refused with its line and field (exit code 2).",
        "",
        "The operator can read it from a ConfigMap instead: `aidp run --provider-catalog-configmap",
        "NAMESPACE/NAME[:KEY]` (the key defaults to `providers.yaml`; in Helm, `providerCatalog.configMap`",
        "in the release namespace). It is read through the API at start (a missing ConfigMap, key or",
        "malformed catalog: the operator does not start, the message names the ConfigMap, line and",
        "field) and watched: a valid change applies without a restart (a full sync renders the egress",
        "rules for the new hosts and the Rego detector data; the next audit's shadow-AI detection uses",
        "it; Event `ProviderCatalogApplied` on the ConfigMap). A change that does not validate, or a",
        "deleted ConfigMap, keeps the last good catalog: the log, a Warning Event",
        "`ProviderCatalogRejected` on the ConfigMap naming the line and the field, and the gauge",
        "`aidp_provider_catalog_rejected` (1 until a valid catalog is back) say so.",
        "",
        "`aidp audit` and `aidp check --kubeconfig` take the same `--provider-catalog-configmap",
        "NAMESPACE/NAME[:KEY]` (environment `AIDP_PROVIDER_CATALOG_CONFIGMAP`), so that a CLI audit of",
        "a cluster whose operator reads its catalog from a ConfigMap detects and evaluates with that",
        "catalog: the ConfigMap is read once through the API with the command's kubeconfig, before the",
        "command does anything (a missing one, key or malformed catalog: exit code 2 naming the",
        "ConfigMap, line and field; a 403 says the caller needs get on that ConfigMap). It is refused",
        "together with `--provider-catalog`. When they talk to a cluster, `aidp audit` and",
        "`aidp check` say on stderr which catalog they use (the built-in one, a file or a ConfigMap).",
        "",
        "An override can change hosts and facts freely; one that adds",
        "a provider or a region also needs the CRD's enum regenerated (`hack/gen-providers",
        "--provider-catalog FILE`, then apply `crds/`), since the API server only accepts the names the",
        "installed CRD lists (`aidp check --provider-catalog` validates against the regenerated enum by",
        "itself).",
        "",
        "| `spec.provider` | Provider | Endpoints | `dataResidency` regions |",
        "|---|---|---|---|",
    ]
    for p in cat:
        fallback = "the region's, or `spec.endpoints`" if p.regions else "from `spec.endpoints`"
        endpoints = ", ".join(_endpoint(e) for e in p.endpoints) or fallback
        regions = ", ".join(f"`{r}`" for r in p.regions) or "none"
        lines.append(f"| `{p.name}` | {_cell(p.display_name)} | {endpoints} | {regions} |")
    lines.append("")
    for p in cat:
        lines += _provider(p, cat.regions)
    return "\n".join(lines).rstrip("\n") + "\n"
