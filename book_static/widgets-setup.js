// Prepares the page for the Jupyter widget manager (html-manager/dist/embed-amd.js), which
// renders the saved widget state of a chapter as a static snapshot. Two fixes, both needed
// for the book to work offline without console errors. This script must load after
// require.js and before embed-amd.js (see nb_ipywidgets_js in _config.yml).
(function () {
  var script = document.currentScript;

  // 1. Fonts and other assets. webpack derives their folder from the bundle's AMD module
  // name, "@jupyter-widgets/html-manager/dist/...", which RequireJS resolves relative to the
  // page being read (chapters/@jupyter-widgets/...): a folder that does not exist. Map the
  // name onto the copy that `make vendor` fetched, served next to this script in _static/.
  if (script && script.src && typeof window.requirejs !== "undefined") {
    var dist = new URL("html-manager/dist", script.src).href;
    window.requirejs.config({ paths: { "@jupyter-widgets/html-manager/dist": dist } });
    window.__jupyter_widgets_assets_path__ = dist + "/";
  }

  // 2. Typesetting widget labels. The widgets call MathJax 2's MathJax.Hub.Queue, but the
  // book loads MathJax 3, which has no Hub: every label would throw a TypeError. Give
  // MathJax 3 a Hub.Queue that forwards to its own typesetPromise. The widgets render on
  // the window's load event, after this listener has run.
  window.addEventListener("load", function () {
    var mathjax = window.MathJax;
    if (mathjax && !mathjax.Hub && typeof mathjax.typesetPromise === "function") {
      mathjax.Hub = {
        Queue: function (job) {
          var element = Array.isArray(job) ? job[2] : undefined;
          return mathjax.typesetPromise(element ? [element] : undefined);
        },
      };
    }
  });
})();
