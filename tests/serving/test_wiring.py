"""The wiring builds the running system from the one settings class, environment included."""

from __future__ import annotations

from tests.conftest import REPO


def test_recommender_settings_from_the_environment_reach_the_running_recommender(
    tmp_path, monkeypatch
):
    from serving.settings import Settings
    from serving.wiring import build_components

    monkeypatch.setenv("REELSIFT_RECOMMENDER__EXPLORATION_EPSILON", "0.0")
    monkeypatch.setenv("REELSIFT_RECOMMENDER__MAX_PER_CREATOR", "7")
    settings = Settings(data_dir=tmp_path / "var", model_cache_dir=REPO / "var" / "test-cache")
    components = build_components(settings, embedder=None,
                                  embedder_unavailable_reason="not needed here")
    try:
        served = components.recommender.settings
        assert served.exploration_epsilon == 0.0 and served.max_per_creator == 7
        assert served.index_dir == settings.index_dir and served.multi_process
    finally:
        components.close()
