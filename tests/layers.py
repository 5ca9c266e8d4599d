#!/usr/bin/env python3
"""The layering check (issue 25), run by `make test`: the arrows between src/'s top-level
folders point one way -- process -> control -> data -> config, with metrics usable by data and
control and itself using only config -- and no two files import each other (no circle of any
length), re-exports resolved to the file that defines the item.

It reads every `use` and every inline `crate::`/`super::` path outside comments and inline test
modules, follows `pub use` re-exports (the crate-root aliases in lib.rs included) to the defining
file, and does not count a parent's `mod child;` / `pub use child::X` as an arrow. It also fails
on a crate-root alias (`crate::snapshot`, ...) used inside src/: there modules are named by their
real paths. Prints each problem; exits 1 when there is one.
"""
import collections
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
ALIASES = ("access_log affinity framing health keys proxy routing snapshot tls admin audit "
           "check ctl demo serve shutdown").split()

files = {}
for d,_,fs in os.walk(ROOT):
    for f in fs:
        if f.endswith('.rs'):
            p=os.path.join(d,f); rel=os.path.relpath(p,ROOT)
            if rel in('main.rs',): continue
            if rel=='lib.rs': mod=()
            else: mod=tuple(rel[:-3].split('/'))
            files[mod]=rel
def strip(text):
    text=re.sub(r'//[^\n]*','',text)
    # drop inline test modules
    m=re.search(r'#\[cfg\(test\)\]\s*mod tests\s*\{',text)
    if m: text=text[:m.start()]
    return text
def expand(prefix, body):
    # body: string after prefix like "a::{b, c::{d,e}}" ; returns list of (segments, alias)
    out=[]
    body=body.strip()
    m=re.match(r'^([\w:]*?)(::)?\{(.*)\}$',body,re.S)
    if m and body.endswith('}'):
        head=[s for s in m.group(1).split('::') if s]
        inner=m.group(3)
        parts=[];depth=0;cur=''
        for ch in inner:
            if ch=='{':depth+=1
            if ch=='}':depth-=1
            if ch==',' and depth==0: parts.append(cur);cur=''
            else: cur+=ch
        parts.append(cur)
        for p in parts:
            p=p.strip()
            if p: out+=expand(prefix+head,p)
        return out
    alias=None
    mm=re.match(r'^(.*?)\s+as\s+(\w+)$',body)
    if mm: body,alias=mm.group(1),mm.group(2)
    segs=[s for s in body.split('::') if s]
    if segs==['self']: segs=[]
    return [(prefix+segs,alias)]
uses={} # mod -> list of (segs, alias, is_pub)
inline={}
for mod,rel in files.items():
    t=strip(open(os.path.join(ROOT,rel)).read())
    L=[]
    for m in re.finditer(r'(pub(?:\([\w: ]+\))?\s+)?use\s+([^;]+);',t):
        for segs,alias in expand([],m.group(2)):
            L.append((segs,alias,bool(m.group(1))))
    uses[mod]=L
    t2=re.sub(r'(pub(?:\([\w: ]+\))?\s+)?use\s+[^;]+;','',t)
    inline[mod]=[m.group(0).split('::') for m in re.finditer(r'\b(?:crate|super)(?:::\w+)+',t2)]
def absolute(mod,segs):
    segs=list(segs)
    if not segs: return None
    if segs[0]=='crate': return [] , segs[1:]
    base=list(mod)
    if segs[0] in('super','self'):
        while segs and segs[0] in('super','self'):
            if segs[0]=='super': base=base[:-1]
            segs=segs[1:]
        return base,segs
    return None  # extern crate or local
def resolve(base,segs,depth=0,via=None):
    """walk; return (module tuple of defining file, via list)"""
    cur=tuple(base); via=via or []
    i=0
    while i<len(segs):
        s=segs[i]
        if cur+(s,) in files: cur=cur+(s,); i+=1; continue
        # re-export in cur?
        if depth<8:
            for useg,alias,pub in uses.get(cur,[]):
                name=alias or (useg[-1] if useg else None)
                if name==s and useg and useg[-1]!='*':
                    a=absolute(cur,useg)
                    if a is None:
                        # relative to cur (e.g. `pub use file::X`)
                        a=(list(cur),useg)
                    r=resolve(a[0],a[1],depth+1,via+[files[cur]])
                    if r: 
                        m2,v2=r
                        return resolve(m2,segs[i+1:],depth+1,v2) if (m2 in files and i+1<len(segs) and m2+(segs[i+1],) in files) else r
        return cur,via
    return cur,via
edges=collections.defaultdict(set)
for mod in files:
    for segs,alias,pub in uses[mod]:
        a=absolute(mod,segs)
        if a is None:
            if segs and mod+(segs[0],) in files: a=(list(mod),segs)
            else: continue
        r=resolve(a[0],a[1])
        if r and r[0]!=mod and r[0] not in (mod[:k] for k in range(len(mod))) :
            edges[mod].add((r[0],' via '+','.join(r[1]) if r[1] else '', '::'.join(segs)))
    for segs in inline[mod]:
        a=absolute(mod,segs)
        r=resolve(a[0],a[1])
        if r and r[0]!=mod and r[0] not in (mod[:k] for k in range(len(mod))):
            edges[mod].add((r[0],' via '+','.join(r[1]) if r[1] else '','::'.join(segs)))

ORDER = {"process": 4, "control": 3, "data": 2, "metrics": 1.5, "config": 1}


def layer(m):
    return m[0] if m else "root"


def upward():
    for m in sorted(edges):
        for t, v, s in sorted(edges[m]):
            a, b = layer(m), layer(t)
            if "root" in (a, b) or a == b:
                continue
            if ORDER[b] > ORDER[a] or (a == "metrics" and b != "config"):
                yield f"upward: {files[m]} -> {files[t]}{v} ({s})"


def circles():
    graph = collections.defaultdict(set)
    for m in edges:
        for t, _, _ in edges[m]:
            if t[: len(m)] != m:  # a parent naming its own descendant is no arrow
                graph[m].add(t)
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(comp)

    for v in list(files):
        if v not in index:
            visit(v)
    for comp in found:
        yield "circle: " + " <-> ".join(sorted(files[x] for x in comp))


def aliases():
    pattern = re.compile(r"\bcrate::(" + "|".join(ALIASES) + r")\b")
    for mod, rel in sorted(files.items()):
        if rel == "lib.rs":
            continue
        for n, line in enumerate(open(os.path.join(ROOT, rel)), 1):
            if pattern.search(line.split("//")[0]):
                yield f"alias: {rel}:{n} uses a crate-root alias: {line.strip()}"


if __name__ == "__main__":
    problems = list(upward()) + list(circles()) + list(aliases())
    for p in problems:
        print(p)
    arrows = sum(len(e) for e in edges.values())
    print(f"layers: {len(files)} files, {arrows} arrows, {len(problems)} problems")
    sys.exit(1 if problems else 0)
