/* DeltaCrown's only script besides htmx. CSP allows scripts from 'self' only,
   so nothing inline: behaviour lives here or in hx-* attributes. */
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : null;
  }

  // Every htmx request carries the CSRF token in a header (Flask-WTF reads X-CSRFToken).
  document.addEventListener("htmx:configRequest", function (event) {
    var token = csrfToken();
    if (token) {
      event.detail.headers["X-CSRFToken"] = token;
    }
  });

  // A 429 carries a message for the person (e.g. too many test messages, try again later),
  // and so does a 409 (e.g. the invite was answered meanwhile): show it like a 422 instead
  // of dropping it as an error.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr.status;
    if (status === 429 || status === 409) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
})();
