// Forms whose refusal is a page block: inside [data-swap-422], a 422 answer (the rules
// preview's list of problems in an invalid rule list) is swapped in like a 200, where
// htmx would drop it as an error. This lives here rather than in an hx-on attribute
// because hx-on needs eval, which the console's CSP and htmx config turn off.
(function () {
  "use strict";
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target || event.target;
    if (event.detail.xhr.status === 422 && target.closest && target.closest("[data-swap-422]")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
})();
