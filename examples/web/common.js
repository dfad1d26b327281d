// Helpers both example pages use: the document and the conversation page.
const $ = (id) => document.getElementById(id);

// Every reply is read as JSON when it can be; anything else becomes {error: ...}, never an exception.
async function request(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (error) {
    return { error: `the server could not be reached (${error.message})` };
  }
  const raw = await response.text();
  let body;
  try { body = JSON.parse(raw); } catch { body = null; }
  if (!response.ok) {
    const message = body && body.error ? body.error : raw.trim() || response.statusText;
    return { error: `${message} (HTTP ${response.status})` };
  }
  return body || { error: `the server sent a reply that is not JSON (HTTP ${response.status})` };
}

// The page shows the error and says it failed (tests and scripts wait on data-state).
function showError(message) {
  $("errors").textContent = message;
  document.body.dataset.state = "failed";
}
