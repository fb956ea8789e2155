#!/usr/bin/env bash
# Builds the txgate binary of an earlier revision, for the before/after ratios that
# bench/sagas.sh measures with BASELINE=. Prints the binary's path on its last line.
#
# Usage: bench/baseline.sh REV     (a commit, tag or branch; the work tree is not touched)
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: bench/baseline.sh REV}
commit=$(git rev-parse --short "$rev")
tree="target/baseline/$commit"
if [ ! -d "$tree" ]; then
  git worktree add --detach -f "$tree" "$commit" >/dev/null
fi
cargo build --release -q -p txgate --manifest-path "$tree/Cargo.toml" --target-dir target/baseline/target >&2
echo "$PWD/target/baseline/target/release/txgate"
