#!/usr/bin/env bash
# `bentoml build` into a throwaway BentoML home (or $BENTOML_HOME when set), then check that
# the Bento's src/ holds every first-party module the service imports, and print its tag.
# `bentoml containerize <tag>` makes the image docs/deploy/ runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export BENTOML_HOME="${BENTOML_HOME:-$(mktemp -d)}"
uv run bentoml build --output tag >/tmp/reelsift-bento-tag.$$ 2>/dev/null
tag=$(tail -n1 /tmp/reelsift-bento-tag.$$ | sed 's/^__tag__://'); rm -f /tmp/reelsift-bento-tag.$$
bento_dir="$BENTOML_HOME/bentos/${tag%%:*}/${tag##*:}"
uv run python - "$bento_dir" <<'PY'
import sys
from pathlib import Path

import serving.service  # noqa: F401  what the Bento serves

repo = Path.cwd().resolve()
bento = Path(sys.argv[1])
packages = {p.parent.name for p in repo.glob("*/__init__.py")}
used = sorted({
    Path(m.__file__).resolve().relative_to(repo) for name, m in list(sys.modules.items())
    if name.split(".")[0] in packages and getattr(m, "__file__", None)
    and Path(m.__file__).resolve().is_relative_to(repo)
})
missing = [str(p) for p in used if not (bento / "src" / p).is_file()]
if missing:
    sys.exit(f"the Bento at {bento} lacks {len(missing)} module(s) the service imports: {missing}")
print(f"{bento}: {len(used)} first-party modules the service imports, all in src/; "
      f"{sum(1 for _ in (bento / 'src').rglob('*') if _.is_file())} files")
PY
echo "built $tag (BENTOML_HOME=$BENTOML_HOME)"
