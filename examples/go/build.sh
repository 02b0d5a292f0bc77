#!/bin/sh
# Build the Go example offline from Debian's packages, in GOPATH mode:
#   apt-get install golang-go protobuf-compiler protoc-gen-go protoc-gen-go-grpc \
#     golang-google-grpc-dev golang-google-protobuf-dev
#   examples/go/build.sh OUT_DIR      -> OUT_DIR/mmsearch-go
# Stubs are generated from proto/ into a scratch GOPATH (nothing generated is committed).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$(mkdir -p "${1:-$here/bin}" && cd "${1:-$here/bin}" && pwd)
gopath=$(mktemp -d)
trap 'rm -rf "$gopath"' EXIT
mkdir -p "$gopath/src/mmsearch/gen/mmsearchv1" "$gopath/src/mmsearch/client"
protoc -I"$root/proto" \
  --go_out="$gopath/src" --go_opt=paths=import \
  --go-grpc_out="$gopath/src" --go-grpc_opt=paths=import \
  "$root/proto/mmsearch/v1/search.proto"
cp "$here/main.go" "$gopath/src/mmsearch/client/"
cd "$gopath/src/mmsearch/client"
GOPATH="$gopath:/usr/share/gocode" GO111MODULE=off GOPROXY=off GOFLAGS=-mod=mod \
  GOCACHE="$gopath/cache" go build -o "$out/mmsearch-go" .
echo "$out/mmsearch-go"
