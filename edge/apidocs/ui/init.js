// The document is found relative to this page, so the UI works under any
// prefix the ingress publishes /docs/ at.
window.ui = SwaggerUIBundle({
  url: new URL("../openapi.json", window.location.href).href,
  dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "StandaloneLayout",
  deepLinking: true,
});
