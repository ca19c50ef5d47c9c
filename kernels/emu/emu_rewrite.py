#!/usr/bin/env python3
"""Turn one kernels/*.cu file into host C++ for the CUDA emulator (emu.h).

Three rewrites, each keeping the line count so that diagnostics and debuggers
point at the original lines (a #line directive names the original file):
  kernel<<<grid, block[, smem[, stream]]>>>(args)
      -> gllm_emu::launch(kernel, "kernel", grid, block[, smem[, stream]])(args)
      (a template kernel whose arguments the call deduces: gllm_emu::launch_deduced,
      which calls it from a generic lambda)
  extern __shared__ [__align__(n)] T name[];
      -> T *name = (T *)gllm_emu::dyn_smem();
  #include <cub/...>  -> removed (emu_cub.h models the calls gllm makes)

usage: emu_rewrite.py IN.cu OUT.cpp
"""
import os
import re
import sys


def callee_start(s, end):
    """Index where the launched expression ending at s[end] begins: names,
    '::' and balanced template arguments, scanning backwards."""
    i = end
    depth = 0
    while i > 0:
        c = s[i - 1]
        if c == '>':
            depth += 1
        elif c == '<' and depth > 0:
            depth -= 1
        elif depth > 0 or c.isalnum() or c in '_:':
            pass
        elif c in ' \t' and depth > 0:
            pass
        else:
            break
        i -= 1
    return i


TEMPLATE_KERNEL = re.compile(
    r'template\s*<[^;{]*?>\s*__global__\s+(?:__launch_bounds__\([^)]*\)\s*)?void\s+(\w+)\s*\(')


def rewrite_launches(s):
    # a template kernel launched by its bare name has its template arguments
    # deduced from the call: it is called from a generic lambda instead
    deduced = set(TEMPLATE_KERNEL.findall(s))
    out = []
    pos = 0
    while True:
        k = s.find('<<<', pos)
        if k < 0:
            out.append(s[pos:])
            return ''.join(out)
        e = s.find('>>>', k)
        if e < 0:
            raise SystemExit('emu_rewrite: <<< without >>>')
        name_end = k
        while name_end > 0 and s[name_end - 1] in ' \t':
            name_end -= 1
        b = callee_start(s, name_end)
        callee = s[b:name_end]
        if not callee:
            raise SystemExit('emu_rewrite: a launch with no kernel name near: ' + s[k - 40:k + 20])
        config = s[k + 3:e]
        out.append(s[pos:b])
        if callee in deduced:
            out.append('gllm_emu::launch_deduced("%s", %s)([=](auto... a_) { %s(a_...); }, '
                       % (callee, config, callee))
            # the argument list's own '(' goes: the arguments follow the lambda
            p = e + 3
            while s[p] in ' \t\n':
                p += 1
            if s[p] != '(':
                raise SystemExit('emu_rewrite: launch of %s without arguments' % callee)
            out.append(s[e + 3:p])
            pos = p + 1
            continue
        out.append('gllm_emu::launch(%s, "%s", %s)' % (callee, callee, config))
        pos = e + 3


DYN = re.compile(r'extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?([A-Za-z_][\w\s]*?)\s+(\w+)\s*\[\s*\]\s*;')


def main():
    src, dst = sys.argv[1], sys.argv[2]
    s = open(src).read()
    s = DYN.sub(lambda m: '%s *%s = (%s *)gllm_emu::dyn_smem();' % (m.group(1), m.group(2), m.group(1)), s)
    s = re.sub(r'^[ \t]*#[ \t]*include[ \t]*<cub/[^>]*>[ \t]*$', '', s, flags=re.M)
    s = rewrite_launches(s)
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    with open(dst, "w") as f:
        f.write('#line 1 "%s"\n' % src)
        f.write(s)


if __name__ == '__main__':
    main()
