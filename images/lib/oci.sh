# Hand-made OCI image layouts, byte-for-byte reproducible: layers are tars with sorted
# names, one fixed mtime and numeric owners, compressed with `gzip -n`; JSON is
# written by jq with sorted keys. Sourced by images/build and images/rootfs.
# shellcheck shell=bash

# oci_init DIR: an empty OCI image layout.
oci_init() {
  rm -rf "$1"
  mkdir -p "$1/blobs/sha256"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$1/oci-layout"
}

# oci_blob DIR FILE: move FILE into the layout's blobs; prints its sha256.
oci_blob() {
  local sum
  sum=$(sha256sum "$2" | cut -d' ' -f1)
  mv "$2" "$1/blobs/sha256/$sum"
  echo "$sum"
}

# oci_tar ROOT OUT EPOCH OWNERS [PATH=UID:GID…]: tar the tree ROOT into OUT.
# OWNERS is "zero" (every entry 0:0, except the PATH=UID:GID entries) or "keep"
# (the tree's own numeric owners, for root-built trees). Entries are sorted by name.
oci_tar() {
  local root=$1 out=$2 epoch=$3 owners=$4
  shift 4
  local -a opts=(--format=gnu --numeric-owner --no-recursion --mtime="@$epoch" -C "$root")
  local list
  list=$(mktemp)
  (cd "$root" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort) >"$list"
  if [ "$owners" = keep ]; then
    tar -cf "$out" "${opts[@]}" -T "$list"
  else
    local spec path
    local -a special=()
    for spec in "$@"; do special+=("${spec%%=*}"); done
    if [ "${#special[@]}" -gt 0 ]; then
      grep -vxF -f <(printf '%s\n' "${special[@]}") "$list" >"$list.rest" || true
    else
      cp "$list" "$list.rest"
    fi
    tar -cf "$out" "${opts[@]}" --owner=0 --group=0 -T "$list.rest"
    for spec in "$@"; do
      path=${spec%%=*}
      spec=${spec#*=}
      tar -rf "$out" "${opts[@]}" --owner="${spec%%:*}" --group="${spec#*:}" -- "$path"
    done
    rm -f "$list.rest"
  fi
  rm -f "$list"
}

# oci_layer DIR TAR: compress TAR into a layer blob of DIR (TAR is consumed);
# prints "DIFF_ID DIGEST SIZE" (hex digests).
oci_layer() {
  local diff size sum
  diff=$(sha256sum "$2" | cut -d' ' -f1)
  gzip -n -6 <"$2" >"$2.gz"
  rm -f "$2"
  size=$(stat -c %s "$2.gz")
  sum=$(oci_blob "$1" "$2.gz")
  echo "$diff $sum $size"
}

# oci_finish DIR CONFIG_JSON ANNOTATIONS_JSON REF LAYER…: write the image config
# (CONFIG_JSON is the OCI "config" object, plus "created"), the manifest and
# index.json; each LAYER is an oci_layer line. Prints the manifest digest.
oci_finish() {
  local dir=$1 config=$2 annotations=$3 ref=$4
  shift 4
  local diffs="[]" layers="[]" line d s z tmp created
  for line in "$@"; do
    read -r d s z <<<"$line"
    diffs=$(jq -c --arg d "sha256:$d" '. + [$d]' <<<"$diffs")
    layers=$(jq -c --arg s "sha256:$s" --argjson z "$z" \
      '. + [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $s, size: $z}]' <<<"$layers")
  done
  created=$(jq -r '.created' <<<"$config")
  tmp=$(mktemp -p "$dir")
  jq -cSj --argjson diffs "$diffs" --arg created "$created" --arg by "${OCI_CREATED_BY:-images/build}" \
    '{created: $created, architecture: "amd64", os: "linux",
      config: del(.created),
      rootfs: {type: "layers", diff_ids: $diffs},
      history: [$diffs[] | {created: $created, created_by: $by}]}' <<<"$config" >"$tmp"
  local csize csum
  csize=$(stat -c %s "$tmp")
  csum=$(oci_blob "$dir" "$tmp")
  tmp=$(mktemp -p "$dir")
  jq -ncSj --argjson layers "$layers" --arg c "sha256:$csum" --argjson cz "$csize" --argjson a "$annotations" \
    '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cz},
      layers: $layers, annotations: $a}' >"$tmp"
  local msize msum
  msize=$(stat -c %s "$tmp")
  msum=$(oci_blob "$dir" "$tmp")
  jq -ncSj --arg m "sha256:$msum" --argjson mz "$msize" --arg ref "$ref" \
    '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $m, size: $mz,
                   annotations: {"org.opencontainers.image.ref.name": $ref}}]}' >"$dir/index.json"
  echo "sha256:$msum"
}

# oci_archive DIR OUT NAME:TAG…: write OUT as a docker-archive (accepted by both
# `podman load` and `docker load`) carrying the given names.
oci_archive() {
  local dir=$1 out=$2 first=$3
  shift 3
  local -a extra=()
  local t
  for t in "$@"; do extra+=(--additional-tag "$t"); done
  rm -f "$out"
  skopeo copy --quiet "${extra[@]}" "oci:$dir" "docker-archive:$out:$first"
}

# need CMD PACKAGE: install a Debian package when CMD is missing.
need() {
  command -v "$1" >/dev/null && return
  apt_install "$2"
}

# need_file PATH PACKAGE: install a Debian package when PATH does not exist.
need_file() {
  [ -e "$1" ] && return
  apt_install "$2"
}

apt_install() {
  echo "installing $1 …" >&2
  if [ -z "${_apt_updated:-}" ]; then
    apt-get update -qq >&2
    _apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >&2
}
