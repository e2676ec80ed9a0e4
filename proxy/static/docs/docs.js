// Swagger UI over the gateway's own document (a file, not inline: the page's
// Content-Security-Policy allows scripts from the gateway only).
window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  validatorUrl: null, // the default sends the document to validator.swagger.io
});
