#!/usr/bin/env bash
# Mints a demo JWT for examples/users.toml with the openssl CLI alone: RS256, signed with the
# demo key beside this script. The demo key is public (it is in the repository): it is for
# trying txgate out, and nothing should ever trust it.
#
#   examples/jwt/mint.sh alice            # sub = alice, valid for an hour
#   examples/jwt/mint.sh bob 600          # valid for 600 seconds
#   TOKEN=$(examples/jwt/mint.sh alice)
#   curl -H "Authorization: Bearer $TOKEN" ...
#
# The claims match the jwt_auth config of examples/users.toml: iss, aud, sub, exp and the scope
# the transfer route requires.
set -euo pipefail

sub=${1:?usage: mint.sh SUBJECT [TTL_SECS]}
ttl=${2:-3600}
key="$(dirname "$0")/demo-key.pem"
# The subject goes into JSON as is, so it is kept to characters that need no escaping.
if ! [[ $sub =~ ^[A-Za-z0-9._@-]{1,64}$ ]]; then
  echo "mint.sh: SUBJECT must be 1 to 64 of A-Z a-z 0-9 . _ @ -" >&2
  exit 2
fi
if ! [[ $ttl =~ ^[0-9]{1,8}$ ]]; then
  echo "mint.sh: TTL_SECS must be a whole number of seconds" >&2
  exit 2
fi

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

now=$(date +%s)
header=$(printf '{"alg":"RS256","typ":"JWT","kid":"demo-1"}' | b64url)
payload=$(printf '{"iss":"https://id.example.com/","aud":"txgate-demo","sub":"%s","iat":%d,"exp":%d,"scope":"transfers:write"}' \
  "$sub" "$now" "$((now + ttl))" | b64url)
signature=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -sign "$key" -binary | b64url)
printf '%s.%s.%s\n' "$header" "$payload" "$signature"
