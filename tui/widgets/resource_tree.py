"""ResourceTree: an application's resources as layer -> target -> resource, with status.

Contract: `show(rows, only_drift)` rebuilds the tree only when the rows changed, keeping
which layers/targets were expanded and which resource was highlighted. Leaf nodes carry
the resource key (str) as data; layer and target nodes carry None. Layers and targets
are labelled with their worst status and drift count; drifted branches start expanded.
"""
from __future__ import annotations

from typing import Callable, Sequence

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from tui.data import ResourceRow, ResState, group_tree, worst

LAYER_ICONS = {"switch": "⇄", "hypervisor": "▣", "host": "▢", "sidecar": "◈"}


def _count_label(name: str, rows: Sequence[ResourceRow], icon: str = "") -> Text:
    drift = sum(1 for r in rows if r.status.drifted)
    w = worst([r.status for r in rows])
    t = Text()
    if icon:
        t.append(f"{icon} ")
    t.append(name, style="bold")
    t.append(f"  {len(rows)}", style="dim")
    if drift:
        t.append(f"  {drift} drift", style=w.style)
    else:
        t.append("  ✔", style="green")
    return t


class ResourceTree(Tree[str]):
    def __init__(self, **kw) -> None:
        super().__init__("resources", **kw)
        self.show_root = False
        self.guide_depth = 3
        self._last: tuple | None = None
        self._seen_branches: set[str] = set()
        self._paths: dict[int, str] = {}   # node id -> "layer" / "layer/target" / resource key

    @property
    def highlighted_key(self) -> str | None:
        node = self.cursor_node
        return node.data if node is not None else None

    def show(self, rows: Sequence[ResourceRow], only_drift: bool = False) -> None:
        snap = (tuple(rows), only_drift)
        if snap == self._last:
            return
        self._last = snap
        expanded = {self._path(n) for n in self._walk(self.root) if n.is_expanded and n is not self.root}
        keep = self.highlighted_key
        keep_path = self._path(self.cursor_node) if self.cursor_node is not None else None
        self.clear()
        self._paths = {}
        shown = [r for r in rows if r.status.drifted] if only_drift else list(rows)
        target_node: TreeNode | None = None
        for layer, targets in group_tree(shown).items():
            layer_rows = [r for rs in targets.values() for r in rs]
            lpath = layer.value
            lnode = self.root.add(_count_label(layer.value, layer_rows, LAYER_ICONS.get(layer.value, "")), data=None)
            self._paths[lnode.id] = lpath
            self._expand(lnode, lpath, expanded, layer_rows)
            for target, trows in targets.items():
                tpath = f"{layer.value}/{target}"
                tnode = lnode.add(_count_label(target, trows), data=None)
                self._paths[tnode.id] = tpath
                self._expand(tnode, tpath, expanded, trows)
                if keep_path == tpath:
                    target_node = tnode
                for r in trows:
                    label = Text()
                    label.append(f"{r.status.icon} ", style=r.status.style)
                    label.append(f"{r.key.kind} ", style="dim")
                    label.append(r.key.name, style="" if r.status is ResState.SYNCED else r.status.style)
                    leaf = tnode.add_leaf(label, data=str(r.key))
                    self._paths[leaf.id] = str(r.key)
                    if keep is not None and str(r.key) == keep:
                        target_node = leaf
        if not shown:
            self.root.add_leaf(Text("no resources" + (" with drift" if only_drift else ""), style="dim"), data=None)
        if target_node is not None:
            self.call_after_refresh(self._restore_cursor, target_node)

    def _restore_cursor(self, node: TreeNode) -> None:
        if node.tree is self and node.line >= 0:
            self.move_cursor(node)

    def _expand(self, node: TreeNode, path: str, expanded: set[str], rows: Sequence[ResourceRow]) -> None:
        first_time = path not in self._seen_branches
        self._seen_branches.add(path)
        if path in expanded or (first_time and any(r.status.drifted for r in rows)):
            node.expand()

    @staticmethod
    def _walk(node: TreeNode):
        yield node
        for c in node.children:
            yield from ResourceTree._walk(c)

    def _path(self, node: TreeNode | None) -> str | None:
        return None if node is None else self._paths.get(node.id)

    def select_key(self, key: str | Callable[[str], bool]) -> bool:
        """Expand the branches above the resource `key` (or the first whose key the predicate
        accepts) and move the cursor onto it."""
        match = key if callable(key) else key.__eq__
        for node in self._walk(self.root):
            if isinstance(node.data, str) and match(node.data):
                parent = node.parent
                while parent is not None:
                    parent.expand()
                    parent = parent.parent
                self.call_after_refresh(self._restore_cursor, node)
                return True
        return False
