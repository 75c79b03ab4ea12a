// The API key field of the pages (shown when the server sets MYSITE_API_KEYS), shared by page.js and
// digit.js: the key goes in the X-API-Key header, never in a URL, and is kept for this tab only
// (sessionStorage) so that / and /mnist ask once.
"use strict";

window.mysiteKey = (() => {
  const STORE = "mysite-api-key";
  const input = document.getElementById("api-key");
  if (input) {
    input.value = input.value || sessionStorage.getItem(STORE) || "";
    input.addEventListener("change", () => sessionStorage.setItem(STORE, input.value.trim()));
  }
  /** ``headers`` plus X-API-Key when the page has a key to send. */
  function withKey(headers) {
    const key = input ? input.value.trim() : "";
    return key ? { ...headers, "X-API-Key": key } : headers;
  }
  return { withKey };
})();
