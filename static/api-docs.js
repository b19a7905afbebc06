// The API docs page (/schema): Swagger UI, vendored in static/vendor/, started from this
// file rather than an inline script so the page runs under the portal's strict
// Content-Security-Policy (script-src 'self'). The schema's address comes from the page.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.SwaggerUIBundle({
    url: root.getAttribute("data-schema-url"),
    domNode: root,
    deepLinking: true,
    // No badge from validator.swagger.io: nothing is loaded from outside the portal.
    validatorUrl: null,
    // `?url=` / `?configUrl=` must not point the page at another schema.
    queryConfigEnabled: false,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
})();
