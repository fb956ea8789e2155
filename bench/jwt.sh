# JWT material for the benches, made at run time: an RSA 2048 and a P-256 key pair, a JSON Web
# Key Set for each, and one long-lived token per algorithm; plus the Envoy bootstrap that
# verifies those tokens with its own jwt_authn filter. Keys and signatures come from the openssl
# CLI; python3 (standard library only) does the JOSE encoding around them: base64url, JSON, and
# the ECDSA signature's DER to JOSE's fixed-size r||s. Sourced, not run.

JWT_ISSUER="https://id.bench.txgate.example/"
JWT_AUDIENCE="bench-api"
JWT_SUBJECT="bench-user"
# The claim passed upstream by both products, and the header it goes in.
JWT_CLAIM_HEADER="x-user-id"
# Far ahead, so a long bench never meets the expiry: ten years.
JWT_LIFETIME_SECS=$((10 * 365 * 24 * 3600))

# jose COMMAND ARGS...: the encoding steps openssl does not do.
#   input KID ALG ISS AUD SUB EXP  the signing input, base64url(header) "." base64url(claims)
#   sig ALG FILE                   a signature file as the token's third part (ES256: DER to r||s)
#   jwk-rsa KID MODULUS_HEX EXP    a JWK Set holding that RSA public key
#   jwk-ec KID SPKI_DER_FILE       a JWK Set holding that P-256 public key
jose() {
  python3 - "$@" <<'PY'
import base64, json, sys, time

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

def compact(value):
    return json.dumps(value, separators=(",", ":")).encode()

def der_to_jose(der):
    # ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }; a P-256 signature is at most 72
    # bytes, so every length is in DER's short form.
    if len(der) < 8 or der[0] != 0x30 or der[1] != len(der) - 2:
        sys.exit("not a DER ECDSA signature")
    parts, at = [], 2
    for _ in range(2):
        if der[at] != 0x02:
            sys.exit("not a DER ECDSA signature")
        length = der[at + 1]
        parts.append(int.from_bytes(der[at + 2:at + 2 + length], "big").to_bytes(32, "big"))
        at += 2 + length
    return parts[0] + parts[1]

command, args = sys.argv[1], sys.argv[2:]
if command == "input":
    kid, alg, iss, aud, sub, exp = args
    header = {"alg": alg, "typ": "JWT", "kid": kid}
    claims = {"iss": iss, "aud": aud, "sub": sub, "iat": int(time.time()), "exp": int(exp)}
    print(b64url(compact(header)) + "." + b64url(compact(claims)))
elif command == "sig":
    alg, path = args
    data = open(path, "rb").read()
    print(b64url(der_to_jose(data) if alg == "ES256" else data))
elif command == "jwk-rsa":
    kid, modulus_hex, exponent = args
    n = bytes.fromhex(modulus_hex)
    e = int(exponent).to_bytes((int(exponent).bit_length() + 7) // 8, "big")
    key = {"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": b64url(n), "e": b64url(e)}
    print(json.dumps({"keys": [key]}, separators=(",", ":")))
elif command == "jwk-ec":
    kid, path = args
    spki = open(path, "rb").read()
    # A P-256 SubjectPublicKeyInfo ends with the uncompressed point: 0x04, x, y.
    point = spki[-65:]
    if len(spki) != 91 or point[0] != 0x04:
        sys.exit("not a P-256 public key")
    key = {"kty": "EC", "kid": kid, "alg": "ES256", "use": "sig", "crv": "P-256",
           "x": b64url(point[1:33]), "y": b64url(point[33:])}
    print(json.dumps({"keys": [key]}, separators=(",", ":")))
else:
    sys.exit(f"jose: unknown command {command}")
PY
}

# jwt_material DIR: writes DIR/jwks-rs256.json, DIR/jwks-es256.json, DIR/token-rs256 and
# DIR/token-es256 (the private keys stay in DIR too, for nothing but signing these).
jwt_material() {
  local dir=$1 exp modulus exponent alg input
  mkdir -p "$dir"
  exp=$(($(date +%s) + JWT_LIFETIME_SECS))
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/rs256.pem" 2>/dev/null
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/es256.pem" 2>/dev/null
  modulus=$(openssl rsa -in "$dir/rs256.pem" -noout -modulus | sed 's/^Modulus=//')
  exponent=$(openssl rsa -in "$dir/rs256.pem" -noout -text | sed -n 's/^publicExponent: \([0-9]*\).*/\1/p')
  jose jwk-rsa bench-rs256 "$modulus" "$exponent" >"$dir/jwks-rs256.json"
  openssl pkey -in "$dir/es256.pem" -pubout -outform DER -out "$dir/es256.pub.der"
  jose jwk-ec bench-es256 "$dir/es256.pub.der" >"$dir/jwks-es256.json"
  for alg in RS256 ES256; do
    local name=${alg,,}
    input=$(jose input "bench-$name" "$alg" "$JWT_ISSUER" "$JWT_AUDIENCE" "$JWT_SUBJECT" "$exp")
    printf '%s' "$input" | openssl dgst -sha256 -sign "$dir/$name.pem" -binary >"$dir/$name.sig"
    printf '%s.%s\n' "$input" "$(jose sig "$alg" "$dir/$name.sig")" >"$dir/token-$name"
  done
}

# envoy_jwt_listener NAME PORT JWKS_FILE [CACHE_SIZE]: one listener whose every request must
# carry a token the jwt_authn filter verifies against JWKS_FILE, proxied to the `backend` cluster.
# Set up as txgate's jwt_auth is: the token from the Authorization header only, not forwarded,
# `sub` passed upstream as a header. Without CACHE_SIZE there is no JWT cache (Envoy's default)
# and every request's signature is verified; with it, Envoy keeps that many verified tokens
# (`jwt_cache_config`), as jwt_auth does by default.
envoy_jwt_listener() {
  local name=$1 port=$2 cache="" jwks
  jwks=$(cat "$3")
  if [ -n "${4:-}" ]; then cache="jwt_cache_config: { jwt_cache_size: $4 }"; fi
  cat <<YAML
  - name: $name
    address: { socket_address: { address: 127.0.0.1, port_value: $port } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: $name
          route_config:
            virtual_hosts:
            - name: backend
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: backend }
          http_filters:
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                bench:
                  issuer: "$JWT_ISSUER"
                  audiences: ["$JWT_AUDIENCE"]
                  local_jwks: { inline_string: '$jwks' }
                  from_headers: [{ name: Authorization, value_prefix: "Bearer " }]
                  forward: false
                  claim_to_headers: [{ header_name: $JWT_CLAIM_HEADER, claim_name: sub }]
                  $cache
              rules:
              - match: { prefix: "/" }
                requires: { provider_name: bench }
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
YAML
}

# envoy_jwt_config ADMIN_PORT UPSTREAM_PORT DIR RS256 ES256 RS256_FULL ES256_FULL: one Envoy with
# a listener per algorithm on each of the four ports, using the key sets jwt_material wrote into
# DIR: the first two with a JWT cache as large as jwt_auth's default, the `_FULL` two without.
envoy_jwt_config() {
  local admin=$1 upstream=$2 dir=$3
  cat <<YAML
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: $admin } }
static_resources:
  listeners:
YAML
  envoy_jwt_listener rs256 "$4" "$dir/jwks-rs256.json" 1024
  envoy_jwt_listener es256 "$5" "$dir/jwks-es256.json" 1024
  envoy_jwt_listener rs256-full "$6" "$dir/jwks-rs256.json"
  envoy_jwt_listener es256-full "$7" "$dir/jwks-es256.json"
  cat <<YAML
  clusters:
  - name: backend
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $upstream } } }
YAML
}

# jwt_check NAME URL TOKEN: refuses to bench a JWT target that does not really verify: a request
# with the token must pass with the claim header set and the token kept back, one without a token
# and one with a broken signature must be refused with 401. URL is the target's /echo endpoint.
jwt_check() {
  local name=$1 url=$2 token=$3 body status forged
  body=$(curl -sf -H "Authorization: Bearer $token" "$url") ||
    { echo "$name: the token was not accepted" >&2; return 1; }
  if ! grep -q "\"$JWT_CLAIM_HEADER\":\[\"$JWT_SUBJECT\"\]" <<<"$body"; then
    echo "$name: no $JWT_CLAIM_HEADER header from the token upstream: $body" >&2
    return 1
  fi
  if grep -qi '"authorization"' <<<"$body"; then
    echo "$name: the token went upstream: $body" >&2
    return 1
  fi
  status=$(curl -s -o /dev/null -w '%{http_code}' "$url")
  [ "$status" = 401 ] || { echo "$name: $status without a token, not 401" >&2; return 1; }
  # The signature's first character changed: same header and claims, a signature that fails.
  local signature=${token##*.}
  local other=A
  [ "${signature:0:1}" = A ] && other=B
  forged="${token%.*}.$other${signature:1}"
  status=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $forged" "$url")
  [ "$status" = 401 ] || { echo "$name: $status with a bad signature, not 401" >&2; return 1; }
}
