#!/bin/sh
# check_install.sh BUILD_DIR PYTHON: installs the build into a temporary prefix, then uses it the
# way a user would: the CLI packs a table, a C program built with `pkg-config softpipe` (shared
# library, rpath) opens the dataset, and the installed Python module reads it.
set -eu
build=$1
py=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
printf 'key,label,x\nr1,1,2.5\nr2,0,3.5\nr3,1,\n' > "$tmp/t.csv"
"$tmp/prefix/bin/softpipe" pack "$tmp/t.csv" -o "$tmp/ds" >/dev/null
cat > "$tmp/use.c" <<'C'
#include <softpipe.h>
#include <stdio.h>
int main(int argc, char **argv) {
    sp_dataset *ds;
    if (argc < 2 || sp_dataset_open(argv[1], &ds) < 0) {
        fprintf(stderr, "%s\n", sp_errmsg());
        return 1;
    }
    sp_value label;
    sp_dataset_value(ds, 2, SP_COL_LABEL, &label);
    printf("%llu %lld %s\n", (unsigned long long)sp_dataset_len(ds), (long long)label.v.i,
           sp_version());
    sp_dataset_close(ds);
    return 0;
}
C
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
# shellcheck disable=SC2046
cc "$tmp/use.c" $(pkg-config --cflags --libs softpipe) -Wl,-rpath,"$tmp/prefix/lib" -o "$tmp/use"
out=$("$tmp/use" "$tmp/ds")
[ "${out% *}" = "3 1" ] || { echo "C program printed '$out', expected '3 1 <version>'"; exit 1; }
pyout=$(PYTHONPATH=$(echo "$tmp"/prefix/lib/python3*/dist-packages) "$py" -c "
import softpipe, sys
ds = softpipe.Dataset(sys.argv[1]); print(len(ds), ds[0][1]['x'])" "$tmp/ds")
[ "$pyout" = "3 2.5" ] || { echo "Python printed '$pyout', expected '3 2.5'"; exit 1; }
echo "install OK: CLI, pkg-config + shared library, Python module"
