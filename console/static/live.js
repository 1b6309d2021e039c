// The live socket (htmx ws extension): the header badge's state, and what the operator
// opened in a block that a push replaces. A push swaps whole blocks by id, so an expanded
// <details data-key="..."> would snap shut each time a new event arrives; its open state
// is copied onto the incoming copy before the swap.
(function () {
  "use strict";
  document.addEventListener("htmx:wsOpen", function () { document.body.setAttribute("data-live", "open"); });
  document.addEventListener("htmx:wsClose", function () { document.body.setAttribute("data-live", "reconnecting"); });
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var target = event.detail.target, fragment = event.detail.fragment;
    if (!target || !fragment) { return; }
    target.querySelectorAll("details[open][data-key]").forEach(function (open) {
      var same = fragment.querySelector('details[data-key="' + CSS.escape(open.getAttribute("data-key")) + '"]');
      if (same) { same.setAttribute("open", ""); }
    });
  });
})();
