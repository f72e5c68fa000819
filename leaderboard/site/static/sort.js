/* Sortable tables for the splitbench site: click a header of a table.sortable to sort its rows by that column.
   A cell's data-sort attribute (a number, or empty for "no value") is used when present, its text otherwise;
   rows without a value always go last. No dependencies, no network. */
(function () {
  "use strict";

  function cellKey(row, index) {
    var cell = row.cells[index];
    if (!cell) return "";
    var key = cell.getAttribute("data-sort");
    return key !== null ? key : cell.textContent.trim();
  }

  function isNumeric(keys) {
    return keys.every(function (k) { return k === "" || !isNaN(Number(k)); });
  }

  function sortBy(table, index, th) {
    var body = table.tBodies[0];
    if (!body) return;
    var descending = th.getAttribute("aria-sort") === "ascending";
    var rows = Array.prototype.slice.call(body.rows);
    var keys = rows.map(function (r) { return cellKey(r, index); });
    var numeric = isNumeric(keys);
    var order = rows.map(function (r, i) { return { row: r, key: keys[i], at: i }; });
    order.sort(function (a, b) {
      if (a.key === "" || b.key === "") {
        return a.key === b.key ? a.at - b.at : (a.key === "" ? 1 : -1);
      }
      var c = numeric ? Number(a.key) - Number(b.key) : a.key.localeCompare(b.key, undefined, { numeric: true });
      if (descending) c = -c;
      return c !== 0 ? c : a.at - b.at;
    });
    order.forEach(function (o) { body.appendChild(o.row); });
    Array.prototype.forEach.call(th.parentNode.children, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
  }

  function init() {
    var tables = document.querySelectorAll("table.sortable");
    Array.prototype.forEach.call(tables, function (table) {
      if (!table.tHead) return;
      var heads = table.tHead.rows[table.tHead.rows.length - 1].cells;
      Array.prototype.forEach.call(heads, function (th, index) {
        var button = document.createElement("button");
        button.type = "button";
        while (th.firstChild) button.appendChild(th.firstChild);
        th.appendChild(button);
        button.title = "sort by this column";
        button.addEventListener("click", function () { sortBy(table, index, th); });
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
