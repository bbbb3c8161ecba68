// Starts GraphiQL on /graphql (DEBUG only) from the vendored React and GraphiQL (static/vendor/). A file, not
// an inline script, so that the page keeps the strict Content-Security-Policy. The session cookie
// authenticates; a POST with a session needs the CSRF token, sent as the header Django reads.
(function () {
  "use strict";
  const root = document.getElementById("graphiql");
  const csrf = document.querySelector('meta[name="csrf-token"]');
  const headers = csrf && csrf.content ? { "X-CSRFToken": csrf.content } : {};
  const fetcher = window.GraphiQL.createFetcher({ url: root.dataset.endpoint, headers });
  const props = {
    fetcher,
    defaultEditorToolsVisibility: true,
    isHeadersEditorEnabled: root.dataset.headerEditor === "true",
    shouldPersistHeaders: root.dataset.persistHeaders === "true",
    inputValueDeprecation: root.dataset.inputValueDeprecation === "true",
  };
  window.ReactDOM.createRoot(root).render(window.React.createElement(window.GraphiQL, props));
})();
