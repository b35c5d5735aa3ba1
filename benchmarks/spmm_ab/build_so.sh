#!/bin/bash
# build_so.sh KERNELS_DIR OUT.so ["-DNAME=VALUE ..."]
# The C core (kernels/src) as one shared object with CMake's per-ISA flags,
# the extra defines applied to every file, for ab.py. Compare builds of the
# same sources with a knob on / off: two different trees link in a different
# order, and code placement alone moved single rows by 2-4% here.
set -e
K=$1; OUT=$2; DEFS=$3; OBJ=$(mktemp -d)
A512="-mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512dq"
for f in $K/src/*.c $K/src/*/*.c; do
  b=$(basename $f .c); fl=""
  case $b in
    avx2) fl="-mavx2 -mfma -mf16c";;
    avx512) fl="$A512";;
    avx512vnni) fl="$A512 -mavx512vnni";;
    neon) continue;;
  esac
  gcc -std=c11 -O3 -fPIC -fopenmp -I$K/include -I$K/src $fl $DEFS -c $f \
      -o $OBJ/$(echo ${f#$K/src/} | tr / _).o &
done
wait
gcc -shared -fopenmp -o $OUT $OBJ/*.o -lm
rm -rf $OBJ
