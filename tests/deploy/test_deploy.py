"""What `docs/deploy/` and `bentoml build` ship: the Kubernetes manifests validate against
the Kubernetes JSON schemas (bundled by kubernetes-validate: offline), every manifest's
commands and references point at things that exist, and the Bento carries every
first-party package and exactly the locked requirements."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pathspec
import pytest
import yaml

from serving.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "docs" / "deploy"
GPU = DEPLOY / "gpu"  # variants applied over the CPU layout, not with `kubectl apply -f DEPLOY`
# The oldest Kubernetes minor still supported upstream when this was written, and the newest
# the schemas bundle: the manifests use nothing newer or removed.
KUBERNETES_VERSIONS = ("1.32.0", kubernetes_validate.latest_version())


def manifests(folder: Path = DEPLOY) -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for path in sorted(folder.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document is not None:
                documents.append((f"{path.name}:{document['kind']}/"
                                  f"{document['metadata']['name']}", document))
    return documents


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in manifests() if d["kind"] == kind}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(version):
    documents = manifests()
    assert len(documents) >= 15
    documents += manifests(GPU)
    for name, document in documents:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name} is not a valid Kubernetes {version} object: {exc.message} "
                        f"at {'/'.join(str(p) for p in exc.path)}")


def test_the_schemas_catch_a_broken_manifest():
    # A typo'd field (strict) and a wrong type both fail: the test above can fail.
    [deployment] = [d for name, d in manifests() if name.startswith("api.yaml:Deployment")]
    typo = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES_VERSIONS[-1], strict=True)
    wrong = {**deployment, "spec": {**deployment["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_layout_has_every_part_and_their_references_resolve():
    deployments = by_kind("Deployment")
    assert set(deployments) == {"reelsift-api", "reelsift-text-analysis",
                                "reelsift-visual-embedding", "reelsift-media-models",
                                "reelsift-event-worker"}
    assert set(by_kind("StatefulSet")) == {"reelsift-postgres", "reelsift-redis"}
    services = by_kind("Service")
    autoscaled = {h["spec"]["scaleTargetRef"]["name"]
                  for h in by_kind("HorizontalPodAutoscaler").values()}
    assert autoscaled == {"reelsift-api", "reelsift-text-analysis", "reelsift-visual-embedding",
                          "reelsift-media-models"}
    assert autoscaled <= set(deployments)
    config = by_kind("ConfigMap")["reelsift-config"]["data"]
    secrets = by_kind("Secret")["reelsift-secrets"]["stringData"]
    known = {f"REELSIFT_{name.upper()}" for name in Settings.model_fields}
    for key in [*config, *secrets]:
        assert key in known or not key.startswith("REELSIFT_"), f"{key} is no reelsift setting"

    for name, deployment in deployments.items():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        for source in container.get("envFrom", []):
            ref = source.get("configMapRef") or source.get("secretRef")
            assert ref["name"] in {"reelsift-config", "reelsift-secrets"}, name
        if name != "reelsift-event-worker":
            assert services[name]["spec"]["selector"].items() <= labels.items()
            # CPU-utilization autoscaling needs a CPU request.
            assert "cpu" in container["resources"]["requests"], name

    # The API reaches each model service it depends on by its Service name, and names the
    # BentoML service of the Bento that the model pod serves.
    from serving.service import Reelsift

    api = deployments["reelsift-api"]["spec"]["template"]["spec"]["containers"][0]
    depends = [api["args"][i + 1] for i, a in enumerate(api["args"]) if a == "--depends"]
    models = {d.on.name for d in Reelsift.dependencies.values()}
    assert models == {"reelsift-text-analysis", "reelsift-visual-embedding",
                      "reelsift-media-models"}
    assert len(depends) == len(models)
    for model in models:
        assert f"{model}=http://{model}:3000" in depends
        args = deployments[model]["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--service-name") + 1] == model


def test_the_gpu_variants_replace_their_cpu_deployments_on_gpu_nodes():
    """docs/deploy/gpu/: each file is a model Deployment and its HPA under the CPU one's
    names, so applying it replaces that Deployment and the API's Service reaches it; its
    pods ask for a GPU, land on GPU nodes and run the models with the cuda setting."""
    base = by_kind("Deployment")
    services = by_kind("Service")
    gpu = manifests(GPU)
    variants = {d["metadata"]["name"]: d for _, d in gpu if d["kind"] == "Deployment"}
    assert set(variants) == {"reelsift-text-analysis", "reelsift-media-models"}
    scaled = {d["spec"]["scaleTargetRef"]["name"] for _, d in gpu
              if d["kind"] == "HorizontalPodAutoscaler"}
    assert scaled == set(variants)
    assert {d["kind"] for _, d in gpu} == {"Deployment", "HorizontalPodAutoscaler"}
    for name, variant in variants.items():
        cpu = base[name]
        assert variant["spec"]["selector"] == cpu["spec"]["selector"], name  # immutable
        labels = variant["spec"]["template"]["metadata"]["labels"]
        assert services[name]["spec"]["selector"].items() <= labels.items(), name
        pod = variant["spec"]["template"]["spec"]
        [container] = pod["containers"]
        [cpu_container] = cpu["spec"]["template"]["spec"]["containers"]
        assert container["args"] == cpu_container["args"], name  # the same Bento service
        assert container["command"] == cpu_container["command"], name
        assert container["image"] != cpu_container["image"], "the GPU image has onnxruntime-gpu"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1, name
        assert "cpu" in container["resources"]["requests"], name  # the HPA scales on CPU
        assert pod["nodeSelector"] and any(
            t["key"] == "nvidia.com/gpu" for t in pod["tolerations"]), name
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["REELSIFT_INFERENCE_DEVICE"] == "cuda", name
        if name == "reelsift-text-analysis":  # float weights: int8 is a CPU form, a text a run
            assert env["REELSIFT_TEXT_EMBEDDER"] == "reelsift.text_embedder.onnx.v1"
        # every variable is a setting, with a value the settings accept
        fields = {f"REELSIFT_{field.upper()}": field for field in Settings.model_fields}
        assert set(env) <= set(fields), name
        Settings(**{fields[key]: value for key, value in env.items()})


def test_the_deployments_commands_exist():
    from bentoml_cli._internal.start import start_command

    from serving.cli import app

    assert "start-http-server" in start_command.commands  # what the model and API pods run
    worker = by_kind("Deployment")["reelsift-event-worker"]
    command = worker["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["python", "-m", "serving.cli"]
    groups = {g.name: g.typer_instance for g in app.registered_groups}
    assert command[3] in groups
    assert command[4] in {c.name for c in groups[command[3]].registered_commands}


def first_party_modules() -> list[str]:
    packages = [p.parent.name for p in REPO.glob("*/__init__.py")
                if p.parent.name not in {"tests", "benchmarks", "scripts"}]
    assert {"core", "ingest", "serving"} <= set(packages)
    return sorted(str(f.relative_to(REPO)) for package in packages
                  for f in (REPO / package).rglob("*.py") if "__pycache__" not in f.parts)


def test_the_bento_includes_every_first_party_module():
    config = yaml.safe_load((REPO / "bentofile.yaml").read_text(encoding="utf-8"))
    include = pathspec.PathSpec.from_lines("gitwildmatch", config["include"])
    exclude = pathspec.PathSpec.from_lines("gitwildmatch", config.get("exclude", []))
    missing = [m for m in first_party_modules()
               if not include.match_file(m) or exclude.match_file(m)]
    assert not missing, f"bentofile.yaml leaves out {missing[:10]}"


def test_the_bento_requirements_are_the_locked_ones():
    exported = subprocess.run(
        ["uv", "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project",
         "--no-header"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout

    def pins(text: str) -> set[str]:
        return {line.strip() for line in text.splitlines()
                if line.strip() and not line.lstrip().startswith("#")}

    shipped = (REPO / "requirements.txt").read_text(encoding="utf-8")
    assert pins(exported) == pins(shipped), (
        "requirements.txt differs from uv.lock: `uv export --no-dev --no-hashes "
        "--no-emit-project -o requirements.txt`"
    )
