"""A replication client in Python (requests): the full round trip against davrepl-server.

usage: repl_client.py BASE_URL
"""
import re
import sys
import time
import xml.etree.ElementTree as ET

import requests

BASE = sys.argv[1].rstrip("/")
DAV = "{DAV:}"
R = "http://schemas.microsoft.com/repl/"
SQL = ('SELECT "DAV:displayname", "http://schemas.microsoft.com/repl/resourcetag", '
       '"http://schemas.microsoft.com/repl/repl-uid" FROM SCOPE(\'SHALLOW TRAVERSAL OF "/pyrepl/"\')')


def manifest(blob, acknowledged=()):
    """SEARCH manifest since `blob`; `acknowledged` resourcetags go in a resourcetaglist (our
    own uploads, which the server must then leave out)."""
    taglist = ""
    if acknowledged:
        taglist = "<R:resourcetaglist>" + "".join(
            f"<R:resourcetag>{t}</R:resourcetag>" for t in acknowledged) + "</R:resourcetaglist>"
    body = (f'<?xml version="1.0"?><D:searchrequest xmlns:D="DAV:" xmlns:R="{R}"><R:repl>'
            f'<R:collblob>{blob}</R:collblob>{taglist}</R:repl><D:sql>{SQL}</D:sql></D:searchrequest>')
    r = requests.request("SEARCH", f"{BASE}/pyrepl/", data=body, headers={"Content-Type": "text/xml"})
    assert r.status_code == 207, (r.status_code, r.text)
    root = ET.fromstring(r.content)
    first = list(root)[0]
    assert first.tag == f"{{{R}}}repl", "repl must come first"
    new_blob = first.find(f"{{{R}}}collblob").text or ""
    rows = []
    for resp in root.findall(f"{DAV}response"):
        rows.append({
            "href": resp.find(f"{DAV}href").text,
            "changetype": resp.find(f"{{{R}}}changetype").text,
            "rt": (resp.find(f".//{{{R}}}resourcetag").text if resp.find(f".//{{{R}}}resourcetag") is not None else None),
        })
    return new_blob, rows


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}")
        sys.exit(1)
    print(f"ok: {what}")


t0 = time.time()
requests.request("DELETE", f"{BASE}/pyrepl/")
check(requests.request("MKCOL", f"{BASE}/pyrepl/").status_code == 201, "MKCOL /pyrepl/")
for i in range(20):
    r = requests.put(f"{BASE}/pyrepl/item{i:02}.txt", data=f"server copy {i}")
    assert r.status_code == 201
blob, rows = manifest("")
check(len(rows) == 20 and all(r["changetype"] == "change" for r in rows), f"first manifest: {len(rows)} change rows")
local = {}
for row in rows:
    g = requests.get(row["href"])
    assert g.status_code == 200
    tag = re.sub(r"^<|>$", "", g.headers["ResourceTag"])
    if tag != row["rt"]:
        check(False, f"GET {row['href']}: ResourceTag {tag} differs from the manifest's {row['rt']}")
    local[row["href"]] = (g.text, tag)
check(len(local) == 20, "downloaded every item; each ResourceTag matches its manifest row")
check(sorted(h.rsplit("/", 1)[1] for h in local) == [f"item{i:02}.txt" for i in range(20)],
      "the first manifest names exactly the 20 items")

# A local change uploaded with conflict detection.
href = rows[0]["href"]
text, tag = local[href]
r = requests.put(href, data=text + " (edited offline)", headers={"If": f"(<{tag}>)"})
check(r.status_code in (200, 204), f"conditional PUT with the held tag: {r.status_code}")
new_tag = re.sub(r"^<|>$", "", r.headers["ResourceTag"])
# Somebody else changed another item; our stale upload must be refused.
other = rows[1]["href"]
requests.put(other, data="changed by another client")
r = requests.put(other, data="my stale edit", headers={"If": f"(<{local[other][1]}>)"})
check(r.status_code == 412, "conflicting PUT with a stale tag gives 412")
check(requests.get(other).text == "changed by another client", "the other client's change was not overwritten")

other_tag = re.sub(r"^<|>$", "", requests.head(other).headers["ResourceTag"])

# Updated manifest, exactly: without a resourcetaglist it reports both changes (ours with the
# tag our PUT returned); with our tag acknowledged in a resourcetaglist, only the other one.
blob2, rows2 = manifest(blob)
got = sorted((r["href"], r["changetype"], r["rt"]) for r in rows2)
want = sorted([(href, "change", new_tag), (other, "change", other_tag)])
check(got == want, f"updated manifest is exactly our edit and the other change: {got}")
blob2b, rows2b = manifest(blob, acknowledged=[new_tag])
got = [(r["href"], r["changetype"], r["rt"]) for r in rows2b]
check(got == [(other, "change", other_tag)], f"with our tag acknowledged, only the other change: {got}")
blob3, rows3 = manifest(blob2)
check(rows3 == [], "manifest after catching up is empty")
print(f"python replication round trip: 20 items, {len(rows2)} updated rows, {time.time() - t0:.2f} s")
