"""Sparsity-specialised fp32 SpMM code for one weight (go/no-go experiment).

Y[M, N] = X[M, K] . W^T with W's pattern baked into straight-line AVX-512
code, emitted as GNU assembler (AT&T syntax) and linked with harness.c:

    chunk c = weight rows n0 .. n0+R-1, one function:
      for each K block of `kb` columns (kb + nacc = 32 zmm registers):
        for each 16-row tile t of x (the loop; the block's code is reused T times):
          zmm[nacc + j] = xp[t][k0 + j][0:16]          (the block's x columns)
          for each row r of the chunk with nonzeros in the block:
            acc  = x_j1 * w1  (vmulps, w broadcast from memory: {1to16})
            acc += x_j * w    (vfmadd231ps, one per further nonzero)
            acc += yt[t][r]   (unless this is the row's first block), yt[t][r] = acc

So a nonzero costs one FMA whose only memory operand is its weight (a 4-byte
broadcast); no index loads, no x loads. Weights sit in `vals` in code order,
addressed by one base register with disp8*4 (the base moves by 1 KiB every 256
values). Rows with no nonzero in the chunk get a zero store in its last block.
"""
import argparse
import time

import numpy as np

NREG = 32


def emit_chunk(w_chunk, k, fname, kb, nacc, vals_out, interleave=False, ablate=(), prefetch=False):
    """Assembly lines of one chunk function; appends its values to vals_out.

    w_chunk: [rows, K] float32. Returns (lines, number of nonzeros)."""
    rows = w_chunk.shape[0]
    lines = [f"    .p2align 6", f"{fname}:"]
    # rdi = xp, rsi = yt, rdx = vals (this chunk), rcx = ntiles
    vcount = 0
    blocks = []
    seen = np.zeros(rows, dtype=bool)
    nblocks = (k + kb - 1) // kb
    nnz = 0
    for b in range(nblocks):
        k0 = b * kb
        sub = w_chunk[:, k0:k0 + kb]
        rr, cc = np.nonzero(sub)
        last = b == nblocks - 1
        empty_rows = np.flatnonzero(~seen & ~np.any(sub != 0, axis=1)) if last else []
        if rr.size == 0 and len(empty_rows) == 0:
            continue
        vals = sub[rr, cc]
        cols_used = np.unique(cc)
        # per row: list of (col, local value index) in code order
        starts = np.searchsorted(rr, np.arange(rows + 1))
        row_list = [r for r in range(rows) if starts[r + 1] > starts[r]]
        order = _row_order(row_list, starts, nacc, interleave)
        acc_of = {r: i % nacc for i, r in enumerate(row_list)}
        lab = f".L{fname}_{b}"
        body = []
        base = 0  # local value index that rax - 512 points at
        vlocal = []
        for step in order:
            kind, r, i = step
            if kind == "nz":
                j = int(cc[i])
                li = len(vlocal)
                vlocal.append(vals[i])
                while li - base > 255:
                    body.append("    addq $1024, %rax")
                    base += 256
                disp = (li - base - 128) * 4
                acc = acc_of[r]
                op = "vmulps" if i == starts[r] else "vfmadd231ps"
                if op == "vmulps" and seen[r] and "seed" in ablate:
                    # start from the row's partial (a load) instead of adding it at the end
                    body.append(f"    vmovaps {r * 64}(%r9), %zmm{acc}")
                    op = "vfmadd231ps"
                body.append(f"    {op} {disp}(%rax){{1to16}}, %zmm{nacc + j}, %zmm{acc}")
            else:  # row end
                acc = acc_of[r]
                if "no_y" in ablate:  # timing ablation: wrong results
                    continue
                if seen[r] and "seed" not in ablate:
                    body.append(f"    vaddps {r * 64}(%r9), %zmm{acc}, %zmm{acc}")
                body.append(f"    vmovaps %zmm{acc}, {r * 64}(%r9)")
        for r in row_list:
            seen[r] = True
        if len(empty_rows):
            body.append("    vpxord %zmm0, %zmm0, %zmm0")
            for r in empty_rows:
                body.append(f"    vmovaps %zmm0, {int(r) * 64}(%r9)")
        nnz += len(vlocal)
        head = [f"    vmovaps {int(j) * 64}(%r8), %zmm{nacc + int(j)}" for j in cols_used]
        blocks.append({"k0": k0, "lab": lab, "vstart": vcount, "nvals": len(vlocal),
                       "head": head, "body": body})
        vals_out.append(np.asarray(vlocal, dtype=np.float32))
        vcount += len(vlocal)
    pf = "prefetch" in ablate or prefetch
    if pf:
        lines.append("    pushq %r12")
    for bi, blk in enumerate(blocks):
        nxt = blocks[bi + 1] if bi + 1 < len(blocks) else blk  # next chunk: about the same
        lab = blk["lab"]
        pre = []
        if pf:
            # spread the next block's code and values over the expected 8 tile passes
            code_lines = -(-(7 * (len(nxt["head"]) + len(nxt["body"])) + 64) // 64)
            val_lines = -(-(4 * nxt["nvals"]) // 64) + 1
            pc, pv = -(-code_lines // 8), -(-val_lines // 8)
            lines += [f"    leaq {lab}_end(%rip), %r11",
                      f"    leaq {(blk['vstart'] + blk['nvals']) * 4}(%rdx), %r12"]
            pre = ([f"    prefetcht1 {i * 64}(%r11)" for i in range(pc)] +
                   [f"    prefetcht0 {i * 64}(%r12)" for i in range(pv)] +
                   [f"    addq ${pc * 64}, %r11", f"    addq ${pv * 64}, %r12"])
        lines += [f"    leaq {blk['k0'] * 64}(%rdi), %r8",
                  "    movq %rsi, %r9",
                  "    movq %rcx, %r10",
                  f"    .p2align 4",
                  f"{lab}:",
                  f"    leaq {(blk['vstart'] + 128) * 4}(%rdx), %rax"]
        lines += blk["head"]
        lines += pre[:len(pre) // 2] + blk["body"][:len(blk["body"]) // 2] + pre[len(pre) // 2:]
        lines += blk["body"][len(blk["body"]) // 2:]
        lines += [f"    addq ${k * 64}, %r8",
                  f"    addq ${rows * 64}, %r9",
                  "    decq %r10",
                  f"    jnz {lab}",
                  f"{lab}_end:"]
    if pf:
        lines.append("    popq %r12")
    lines += ["    vzeroupper", "    ret"]
    return lines, nnz


def _row_order(row_list, starts, nacc, interleave):
    """Code order: ("nz", row, index) per nonzero, ("end", row, None) per row.
    Rows one after another (out-of-order execution overlaps them, each on its
    own accumulator of `nacc`), or `interleave`d round-robin in groups of nacc."""
    out = []
    if not interleave:
        for r in row_list:
            out += [("nz", r, i) for i in range(starts[r], starts[r + 1])]
            out.append(("end", r, None))
        return out
    for g in range(0, len(row_list), nacc):
        grp = row_list[g:g + nacc]
        pos = {r: starts[r] for r in grp}
        live = list(grp)
        while live:
            nxt = []
            for r in live:
                out.append(("nz", r, pos[r]))
                pos[r] += 1
                if pos[r] == starts[r + 1]:
                    out.append(("end", r, None))
                else:
                    nxt.append(r)
            live = nxt
    return out


def generate(w, rows=64, kb=24, interleave=False, ablate=(), prefetch=False):
    """(assembly text, values in code order, statistics) for weight w [N, K]."""
    w = np.ascontiguousarray(w, dtype=np.float32)
    n, k = w.shape
    nacc = NREG - kb
    assert 1 <= nacc < NREG and 1 <= rows <= 127
    t0 = time.perf_counter()
    out = ["# generated by benchmarks/spmm_jit/gen.py", "    .text"]
    vals, voff, names, total = [], [], [], 0
    nchunks = (n + rows - 1) // rows
    for c in range(nchunks):
        voff.append(total)
        fname = f"jit_chunk_{c}"
        names.append(fname)
        lines, nnz = emit_chunk(w[c * rows:(c + 1) * rows], k, fname, kb, nacc, vals, interleave, ablate, prefetch)
        out += lines
        total += nnz
    out += ["    .section .data.rel.ro,\"aw\"", "    .p2align 3", "    .globl jit_chunks",
            "jit_chunks:"] + [f"    .quad {f}" for f in names]
    out += ["    .section .rodata", "    .p2align 3", "    .globl jit_voff", "jit_voff:"]
    out += [f"    .quad {v}" for v in voff]
    for name, v in (("jit_nchunks", nchunks), ("jit_rows", rows), ("jit_n", n), ("jit_k", k)):
        out += [f"    .globl {name}", f"{name}:", f"    .quad {v}"]
    out.append('    .section .note.GNU-stack,"",@progbits')
    values = np.concatenate(vals) if vals else np.zeros(0, np.float32)
    assert values.size == np.count_nonzero(w)
    stats = {"nnz": int(values.size), "gen_s": time.perf_counter() - t0, "chunks": nchunks}
    return "\n".join(out) + "\n", values, stats



# ---- variant "rows in registers" (generate_t) ---------------------------------
# The transpose of the scheme above: a group of G = 24 weight rows keeps its 24
# accumulators for a whole K panel, and each x column of the panel is loaded
# once per tile into one of 8 rotating registers and feeds every FMA of the
# group's rows on that column. No Y partial per (row, block): a row's partial
# is loaded and stored once per panel. Memory operations per FMA: 1 (weight) +
# panel / nonzeros (x), ~1.14 at 30% density, against ~1.27 above.
GROUP = 24


def emit_group(w_grp, k, k0, kw, n0, n_all, fname, first_panel, vals_out, prefetch=False):
    """One (panel, group) function; rdi = xp, rsi = yt [T][N][16], rdx = vals, rcx = ntiles.
    prefetch: spread the next function's code and values (assumed about this one's
    size) over 8 tile passes."""
    g = w_grp.shape[0]
    sub = w_grp[:, k0:k0 + kw]
    cc, rr = np.nonzero(sub.T)  # column-major: code order
    vals = sub[rr, cc]
    pre = []
    lines = ["    .p2align 6", f"{fname}:"]
    if prefetch:
        code_lines = -(-(7 * (vals.size + kw + 2 * g)) // 64)
        val_lines = -(-(4 * vals.size) // 64) + 1
        pc, pv = -(-code_lines // 8), -(-val_lines // 8)
        lines += ["    pushq %r12", "    pushq %r13", f"    leaq .L{fname}_end(%rip), %r12",
                  f"    leaq {vals.size * 4}(%rdx), %r13"]
        pre = ([f"    prefetcht1 {i * 64}(%r12)" for i in range(pc)] +
               [f"    prefetcht0 {i * 64}(%r13)" for i in range(pv)] +
               [f"    addq ${pc * 64}, %r12", f"    addq ${pv * 64}, %r13"])
    lines += [f"    leaq {k0 * 64}(%rdi), %r8",
             f"    leaq {n0 * 64}(%rsi), %r9",
             "    movq %rcx, %r10",
             "    .p2align 4",
             f".L{fname}_t:",
             "    leaq 512(%rdx), %rax",
             "    leaq 8192(%r8), %r11"]
    for r in range(g):
        lines.append(f"    vpxord %zmm{r}, %zmm{r}, %zmm{r}" if first_panel
                     else f"    vmovaps {r * 64}(%r9), %zmm{r}")
    lines += pre
    starts = np.searchsorted(cc, np.arange(kw + 1))
    vbase, xbase, tmp = 0, 0, 0
    for j in range(kw):
        if starts[j + 1] == starts[j]:
            continue
        while j - xbase > 255:
            lines.append("    addq $16384, %r11")
            xbase += 256
        xr = GROUP + tmp % (32 - GROUP)
        tmp += 1
        lines.append(f"    vmovaps {(j - xbase - 128) * 64}(%r11), %zmm{xr}")
        for i in range(starts[j], starts[j + 1]):
            while i - vbase > 255:
                lines.append("    addq $1024, %rax")
                vbase += 256
            lines.append(f"    vfmadd231ps {(i - vbase - 128) * 4}(%rax){{1to16}}, %zmm{xr}, %zmm{int(rr[i])}")
    for r in range(g):
        lines.append(f"    vmovaps %zmm{r}, {r * 64}(%r9)")
    lines += [f"    addq ${k * 64}, %r8",
              f"    addq ${n_all * 64}, %r9",
              "    decq %r10",
              f"    jnz .L{fname}_t",
              f".L{fname}_end:"]
    if prefetch:
        lines += ["    popq %r13", "    popq %r12"]
    lines += ["    vzeroupper", "    ret"]
    vals_out.append(np.asarray(vals, dtype=np.float32))
    return lines, int(vals.size)


def generate_t(w, panel=384, prefetch=False):
    """(assembly, values, stats) of the rows-in-registers variant; harness entry jit2_linear."""
    w = np.ascontiguousarray(w, dtype=np.float32)
    n, k = w.shape
    t0 = time.perf_counter()
    out = ["# generated by benchmarks/spmm_jit/gen.py (generate_t)", "    .text"]
    npan = (k + panel - 1) // panel
    ngrp = (n + GROUP - 1) // GROUP
    vals, voff, names, total = [], [], [], 0
    for p in range(npan):
        k0 = p * panel
        kw = min(panel, k - k0)
        for gi in range(ngrp):
            fname = f"jit2_fn_{p}_{gi}"
            names.append(fname)
            voff.append(total)
            lines, nz = emit_group(w[gi * GROUP:(gi + 1) * GROUP], k, k0, kw, gi * GROUP, n,
                                   fname, p == 0, vals, prefetch)
            out += lines
            total += nz
    out += ["    .section .data.rel.ro,\"aw\"", "    .p2align 3", "    .globl jit2_fns",
            "jit2_fns:"] + [f"    .quad {f}" for f in names]
    out += ["    .section .rodata", "    .p2align 3", "    .globl jit2_voff", "jit2_voff:"]
    out += [f"    .quad {v}" for v in voff]
    for name, v in (("jit2_npanels", npan), ("jit2_ngroups", ngrp), ("jit2_group", GROUP),
                    ("jit2_n", n), ("jit2_k", k)):
        out += [f"    .globl {name}", f"{name}:", f"    .quad {v}"]
    out.append('    .section .note.GNU-stack,"",@progbits')
    values = np.concatenate(vals) if vals else np.zeros(0, np.float32)
    assert values.size == np.count_nonzero(w)
    stats = {"nnz": int(values.size), "gen_s": time.perf_counter() - t0, "chunks": ngrp * npan}
    return "\n".join(out) + "\n", values, stats

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("npy", help="weight [N, K] float32 .npy")
    ap.add_argument("out", help="output .S")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--kb", type=int, default=24)
    ap.add_argument("--interleave", action="store_true")
    a = ap.parse_args()
    text, values, stats = generate(np.load(a.npy), a.rows, a.kb, a.interleave)
    with open(a.out, "w") as f:
        f.write(text)
    np.save(a.out + ".vals.npy", values)
    print(stats)


if __name__ == "__main__":
    main()
