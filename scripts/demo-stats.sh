#!/bin/sh
# Draw docs/images/stats-traffic.png (and print the text table) from generated traffic.
#
# Ten weeks of a desk with four queues (info, info::de, permissions, press) are written
# into a temporary SQLite database by tests/reports/seed.py (quiet weekends, a few busy
# days, a slow fortnight when the backlog grows), then `ticketbot stats` reports on the
# last six weeks, as an admin would. The same seed gives the same picture.
#
#   scripts/demo-stats.sh                 # to docs/images/stats-traffic.png
#   OUT=/tmp/stats scripts/demo-stats.sh  # all four files into another folder
#   END=2027-03-31 scripts/demo-stats.sh  # a different last day (not after today)
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
END=${END:-2026-11-23}
OUT=${OUT:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$PYTHON" -m tests.reports.seed --url "sqlite:///$work/desk.db" --end "$END" --days 70 \
    --seed 7 --now "${END}T23:00:00+00:00"

cat > "$work/bot.toml" <<EOF
[storage]
url = "sqlite:///$work/desk.db"

[mail.maildir]
path = "mail"

[mail.files]
path = "out"

[console]
enabled = true
user = "@alice:example.org"

[[queue]]
name = "info"
addresses = ["info@example.org"]
volunteers = ["@alice:example.org"]
default = true
console = true

[[queue]]
name = "info::de"

[[queue]]
name = "permissions"
addresses = ["permissions@example.org"]
volunteers = ["@bob:example.org"]
console = true

[[queue]]
name = "press"
addresses = ["press@example.org"]
volunteers = ["@carol:example.org"]
console = true
EOF

first=$("$PYTHON" -c "import datetime as d; print(d.date.fromisoformat('$END') - d.timedelta(days=41))")
"$PYTHON" -m bot.cli stats --config "$work/bot.toml" --log-level WARNING \
    --from "$first" --to "$END" --out "$work/out"

if [ -n "$OUT" ]; then
    mkdir -p "$OUT"
    cp "$work"/out/* "$OUT"/
else
    mkdir -p docs/images
    cp "$work/out/stats-traffic.png" docs/images/stats-traffic.png
    echo "docs/images/stats-traffic.png: $(wc -c < docs/images/stats-traffic.png) bytes"
fi
