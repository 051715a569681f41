// The page at GET /: score a review with the chosen models (POST /predict), show each model's answer with
// its test figures (GET /models), and colour the review's words by one model's contributions (POST /explain).
// Plain JavaScript, no framework; every URL is relative to the page's <base>, so it reaches this service only.
"use strict";

(() => {
  const body = document.body;
  const MAX_CHARS = Number(body.dataset.maxReviewChars) || Infinity;
  const KEYS_REQUIRED = body.dataset.apiKeys === "required";
  // A character that is not whitespace to Python's str.split(), as the service's own blank-review rule
  // (service/schemas.py, HAS_TEXT_PATTERN): JavaScript's \S disagrees on a few characters such as U+0085.
  const HAS_TEXT = /[^\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/;
  const POSITIVE_RGB = [33, 102, 172];  // #2166ac
  const NEGATIVE_RGB = [179, 88, 6];    // #b35806
  const METHODS = {
    temperature: "one temperature",
    signed_temperature: "a signed temperature",
    signed_power: "a signed power",
  };
  const EXPLAIN_METHODS = {
    exact: "exact shares: the bias and the words' contributions add up to the logit",
    occlusion: "occlusion: a word's contribution is the logit minus the logit with that word replaced by an " +
      "unknown word",
  };

  const $ = (id) => document.getElementById(id);
  const main = $("sentiment-page");
  const status = $("status");
  const keyPanel = $("key-panel");
  const keyForm = $("key-form");
  const keyInput = $("api-key");
  const keyMessage = $("key-message");
  const samplesBox = $("samples");
  const reviewForm = $("review-form");
  const review = $("review");
  const reviewCount = $("review-count");
  const modelsBox = $("models");
  const scoreButton = $("score");
  const message = $("message");
  const results = $("results");
  const truth = $("truth");
  const agreementLine = $("agreement");
  const warningsList = $("warnings");
  const scores = $("scores");
  const explanation = $("explanation");
  const explainSelect = $("explain-model");
  const explainSummary = $("explain-summary");
  const explainMessage = $("explain-message");
  const words = $("words");
  const wordDetail = $("word-detail");

  let apiKey = "";            // the API key: in this variable only, never stored
  let models = [];            // GET /models entries
  let defaultModel = null;
  let loadedSample = null;    // the sample whose text is in the text area, unchanged
  let scored = null;          // {text, sample}: what the results on the page are for
  let scoreRequests = 0;      // answers to older requests are dropped
  let explainRequests = 0;

  class ServiceError extends Error {
    constructor(status, detail, text) {
      super(text);
      this.status = status;
      this.detail = detail;
    }
  }

  // ---- talking to the service -------------------------------------------------------------------------

  async function api(path, options = {}) {
    const headers = { ...(options.headers || {}) };
    if (apiKey) headers["X-API-Key"] = apiKey;
    let response;
    try {
      response = await fetch(path, { ...options, headers, cache: "no-store" });
    } catch (error) {
      throw new ServiceError(0, [], `Could not reach the service (${error.message}). Is it running?`);
    }
    let payload = null;
    try {
      payload = await response.json();
    } catch {
      payload = null;
    }
    if (!response.ok) {
      const detail = payload && Array.isArray(payload.detail) ? payload.detail : [];
      throw new ServiceError(response.status, detail, describeError(response.status, detail, response.statusText));
    }
    return payload;
  }

  function postJSON(path, reviews) {
    return api(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ reviews }),
    });
  }

  function describeError(code, detail, statusText) {
    const said = detail.map((item) => item.msg).filter(Boolean).join("; ");
    const because = said ? ` The service says: ${said}.` : "";
    switch (code) {
      case 401:
        return apiKey
          ? `The service refused the API key (401 Unauthorized): check it and enter it again.${because}`
          : `The service needs an API key (401 Unauthorized): enter it in the API key field.${because}`;
      case 413:
        return `The review is too large for the service (413).${because}`;
      case 422:
        if (detail.some((item) => item.type === "blank_review")) {
          return "The review is empty: it has no text, only spaces. Write or paste a review first.";
        }
        return `The service could not score this review (422).${because}`;
      case 503:
        return "The service is not ready to answer (503 Service Unavailable): its models may still be loading " +
          `or warming up, or a model is busy. Try again in a moment.${because}`;
      default:
        return `The service answered ${code} ${statusText || ""}.${because}`.replace(" .", ".");
    }
  }

  // ---- small helpers ----------------------------------------------------------------------------------

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function characters(text) {  // code points, as the service counts (Python's len)
    let count = 0;
    for (const _ of text) count += 1;
    return count;
  }

  // A score with enough digits to show its side of 0.5 (0.4999 is no "0.500").
  function scoreText(score) {
    let digits = 3;
    while (digits < 9 && score !== 0.5 && Number(score.toFixed(digits)) === 0.5) digits += 1;
    return score.toFixed(digits);
  }

  const percent = (value, digits = 1) => `${(100 * value).toFixed(digits)} %`;
  const signed = (value, digits = 3) => `${value > 0 ? "+" : value < 0 ? "−" : "±"}${Math.abs(value).toFixed(digits)}`;
  const plural = (count, word) => `${count.toLocaleString("en")} ${word}${count === 1 ? "" : "s"}`;
  const listed = (names) => names.length <= 1 ? names.join("") :
    `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;

  function showMessage(text, kind = "error") {
    message.textContent = text;
    message.className = kind === "info" ? "info" : "";
  }

  function setState(state) {
    main.dataset.state = state;
  }

  // ---- the API key ------------------------------------------------------------------------------------

  function showKeyPanel(text, focus = true) {
    keyPanel.hidden = false;
    keyMessage.textContent = text;
    if (focus) keyInput.focus();
  }

  keyForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = keyInput.value;
    if (!key) {
      keyMessage.textContent = "Enter the API key first.";
      keyInput.focus();
      return;
    }
    if (/[^\x20-\x7e\x80-\xff]/.test(key) || key !== key.trim()) {
      keyMessage.textContent = "An API key travels in an HTTP header: it cannot start or end with a space, " +
        "or hold characters beyond Latin-1.";
      keyInput.focus();
      return;
    }
    apiKey = key;
    keyInput.value = "";
    keyMessage.textContent = "Checking the key…";
    if (await loadModels()) {
      keyMessage.textContent = "Key accepted. It is kept in this page's memory only: reloading the page forgets it.";
      showMessage("");
      review.focus();
    }
  });

  // ---- readiness and the models -----------------------------------------------------------------------

  async function checkReady(delay = 2000) {
    try {
      const ready = await api("readyz");
      const failed = Object.entries(ready.failed || {});
      status.className = "";
      status.textContent = `Ready: ${plural(ready.models.length, "model")} loaded and warmed up.` +
        (failed.length ? ` Not loaded: ${failed.map(([name, why]) => `${name} (${why})`).join("; ")}.` : "");
    } catch (error) {
      status.className = "bad";
      status.textContent = error.status === 503
        ? "The service is not ready yet: its models are loading or warming up. Checking again…"
        : `${error.message} Checking again…`;
      setTimeout(() => checkReady(Math.min(delay * 2, 15000)), delay);
    }
  }

  async function loadModels() {
    try {
      const answer = await api("models");
      models = answer.models;
      defaultModel = answer.default;
      renderModels();
      setState("ready");
      return true;
    } catch (error) {
      if (error.status === 401) {
        apiKey = "";
        setState("needs-key");
        showKeyPanel(error.message);
      } else {
        setState("error");
        showMessage(`The models could not be listed: ${error.message}`);
      }
      return false;
    }
  }

  function renderModels() {
    const checked = new Set([...modelsBox.querySelectorAll("input:checked")].map((box) => box.value));
    const first = modelsBox.querySelectorAll("input").length === 0;
    modelsBox.querySelectorAll("label").forEach((label) => label.remove());
    $("models-empty").hidden = models.length > 0;
    for (const model of models) {
      const label = element("label");
      const box = element("input");
      box.type = "checkbox";
      box.name = "model";
      box.value = model.name;
      box.checked = first || checked.has(model.name);
      label.append(box, model.name + (model.default ? " (default)" : ""));
      modelsBox.append(label);
    }
    const chosen = explainSelect.value || defaultModel;
    explainSelect.replaceChildren(...models.map((model) => {
      const option = element("option", "", model.name + (model.default ? " (default)" : ""));
      option.value = model.name;
      option.selected = model.name === chosen;
      return option;
    }));
  }

  function figures(name) {
    const model = models.find((item) => item.name === name);
    if (!model) return "";
    const parts = [];
    if (model.test_accuracy != null) parts.push(`test accuracy ${percent(model.test_accuracy)}`);
    if (model.test_metrics && model.test_metrics.roc_auc != null) {
      parts.push(`ROC AUC ${model.test_metrics.roc_auc.toFixed(3)}`);
    }
    const calibration = model.calibration;
    if (calibration && calibration.after) {
      parts.push(`ECE ${percent(calibration.after.ece, 2)} (uncalibrated ${percent(calibration.before.ece, 2)})`);
      parts.push(`Brier ${calibration.after.brier.toFixed(3)}`);
      parts.push(`calibrated with ${METHODS[calibration.method] || calibration.method}`);
    }
    if (model.robustness_score != null) parts.push(`robustness score ${percent(model.robustness_score)}`);
    const reviews = model.test_metrics && model.test_metrics.reviews;
    return parts.length ? `${parts.join(" · ")}${reviews ? ` (on ${reviews.toLocaleString("en")} test reviews)` : ""}` :
      "no test figures recorded";
  }

  // ---- samples ----------------------------------------------------------------------------------------

  async function loadSamples() {
    let answer;
    try {
      answer = await api("static/samples.json");
    } catch (error) {
      samplesBox.append(element("span", "hint", `(samples unavailable: ${error.message})`));
      return;
    }
    answer.reviews.forEach((sample, index) => {
      const wordCount = sample.text.split(/\s+/).filter(Boolean).length;
      const opening = sample.text.split(/\s+/).filter(Boolean).slice(0, 3).join(" ");
      const button = element("button", "sample", `${index + 1}. “${opening}…” · ${plural(wordCount, "word")}`);
      button.type = "button";
      button.dataset.sample = String(index);
      button.setAttribute("aria-pressed", "false");
      button.title = `IMDB test review ${sample.id}: load it into the text area`;
      button.addEventListener("click", () => loadSample(sample, button));
      samplesBox.append(button);
    });
  }

  function loadSample(sample, button) {
    review.value = sample.text;
    loadedSample = sample;
    samplesBox.querySelectorAll("button").forEach((other) => other.setAttribute("aria-pressed", "false"));
    button.setAttribute("aria-pressed", "true");
    updateCount();
    showMessage(`Loaded IMDB test review ${sample.id}. Press Score (or Ctrl+Enter) to score it; its true label ` +
      "is shown beside the answers.", "info");
  }

  function updateCount() {
    const count = characters(review.value);
    const over = count > MAX_CHARS;
    reviewCount.textContent = `${plural(count, "character")}` +
      (Number.isFinite(MAX_CHARS) ? ` (at most ${MAX_CHARS.toLocaleString("en")})` : "");
    reviewCount.classList.toggle("over", over);
  }

  review.addEventListener("input", () => {
    if (loadedSample && review.value !== loadedSample.text) {
      loadedSample = null;
      samplesBox.querySelectorAll("button").forEach((button) => button.setAttribute("aria-pressed", "false"));
    }
    updateCount();
  });

  // ---- scoring ----------------------------------------------------------------------------------------

  reviewForm.addEventListener("submit", (event) => {
    event.preventDefault();
    score();
  });

  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !keyForm.contains(event.target)) {
      event.preventDefault();
      reviewForm.requestSubmit();
    }
  });

  function refuse(text, focus = review) {
    showMessage(text);
    setState("invalid");
    if (focus) focus.focus();
  }

  async function score() {
    const text = review.value;
    if (!HAS_TEXT.test(text)) {
      refuse("The review is empty: write or paste a review (or load a sample) first, then press Score.");
      return;
    }
    const count = characters(text);
    if (count > MAX_CHARS) {
      refuse(`The review is too long: it has ${count.toLocaleString("en")} characters and the service accepts at ` +
        `most ${MAX_CHARS.toLocaleString("en")}. Shorten it and score again.`);
      return;
    }
    if (KEYS_REQUIRED && !apiKey) {
      showKeyPanel("This service needs an API key: enter it, then score again.");
      refuse("Enter the API key first: this service answers only requests that carry one.", keyInput);
      return;
    }
    if (!models.length && !(await loadModels())) return;
    const chosen = [...modelsBox.querySelectorAll("input:checked")].map((box) => box.value);
    if (!chosen.length) {
      refuse("Choose at least one model to score with.", modelsBox.querySelector("input"));
      return;
    }
    const request = ++scoreRequests;
    const sample = loadedSample;
    scoreButton.disabled = true;
    scoreButton.textContent = "Scoring…";
    setState("scoring");
    showMessage("");
    const query = new URLSearchParams(chosen.map((name) => ["model", name]));
    try {
      const answer = await postJSON(`predict?${query}`, [text]);
      if (request !== scoreRequests) return;
      scored = { text, sample };
      renderScores(answer, sample);
      setState("scored");
      explain();
    } catch (error) {
      if (request !== scoreRequests) return;
      fail(error);
    } finally {
      if (request === scoreRequests) {
        scoreButton.disabled = false;
        scoreButton.textContent = "Score";
      }
    }
  }

  function fail(error) {
    results.hidden = true;
    explanation.hidden = true;
    scored = null;
    setState("error");
    showMessage(error.message);
    if (error.status === 401) showKeyPanel(error.message);
  }

  function renderScores(answer, sample) {
    const truthLabel = sample ? (sample.label === 1 ? "positive" : "negative") : null;
    truth.hidden = !sample;
    if (sample) {
      truth.textContent = "";
      truth.append("True label of this IMDB test review: ", element("strong", `label-${truthLabel}`, truthLabel),
        ` (review ${sample.id}, rated ${sample.rating}/10).`);
    }
    const answers = answer.results.map((result) => ({ ...result, prediction: result.predictions[0] }));
    renderAgreement(answer.agreement, answers);
    renderWarnings(answers);
    scores.replaceChildren(...answers.map((result) => scoreRow(result, truthLabel)));
    results.hidden = false;
  }

  function scoreRow(result, truthLabel) {
    const { prediction } = result;
    const row = element("div", "model-score");
    row.dataset.model = result.model;
    row.dataset.score = String(prediction.score);
    row.dataset.label = prediction.label;
    const name = element("div", "name", result.model);
    if (result.model === defaultModel) name.append(element("span", "badge", "default"));
    const bar = element("div", "bar");
    bar.setAttribute("role", "img");
    bar.setAttribute("aria-label", `score ${scoreText(prediction.score)} of 1, ${prediction.label}`);
    const fill = element("div", `fill ${prediction.label}`);
    fill.style.width = `${(100 * prediction.score).toFixed(2)}%`;
    bar.append(fill);
    const answerCell = element("div", "answer");
    answerCell.append(element("span", `label ${prediction.label}`, prediction.label), ` ${scoreText(prediction.score)}`);
    if (truthLabel) {
      const right = prediction.label === truthLabel;
      const verdict = element("span", "verdict", right ? "✓ right" : "✗ wrong");
      verdict.title = right ? "matches the review's true label" : "differs from the review's true label";
      answerCell.append(verdict);
    }
    const read = element("div", "figures",
      `${figures(result.model)}. Read ${plural(prediction.words, "word")}, ${prediction.known_words} of them known; ` +
      `version ${result.version}.`);
    row.append(name, bar, answerCell, read);
    return row;
  }

  function renderAgreement(agreement, answers) {
    agreementLine.hidden = !agreement;
    if (!agreement) return;
    const positive = answers.filter((result) => result.prediction.label === "positive").map((result) => result.model);
    const negative = answers.filter((result) => result.prediction.label === "negative").map((result) => result.model);
    const count = agreement.models.length;
    agreementLine.textContent = agreement.disagree === 0
      ? `Agreement: all ${count} models say ${positive.length ? "positive" : "negative"}.`
      : `Agreement: the ${count} models disagree: ${positive.length} say positive (${listed(positive)}), ` +
        `${negative.length} say negative (${listed(negative)}).`;
  }

  function warningText(code, prediction, names, total) {
    const who = names.length > 1 && names.length === total ? `all ${total} models` : listed(names);
    switch (code) {
      case "truncated":
        return `Truncated: the review has more words than ${who} read; ${names.length === 1 ? "it" : "they"} ` +
          `scored only its last ${plural(prediction.words, "word")} and left out the first ones.`;
      case "few_known_words":
        return `Few known words: ${who} knew only ${prediction.known_words} of the ${prediction.words} words read, ` +
          "so the score rests on a few words.";
      case "no_known_words":
        return `No known words: ${who} knew none of the review's words, so the score is the model's answer to a ` +
          "review of unknown words, not a judgement of the text.";
      default:
        return `${code}: ${who}.`;
    }
  }

  function renderWarnings(answers) {
    const groups = new Map();  // the same warning with the same counts: one line naming the models
    for (const result of answers) {
      for (const code of result.prediction.warnings) {
        const { words: read, known_words: known } = result.prediction;
        const key = code === "truncated" ? `${code}/${read}` : `${code}/${read}/${known}`;
        if (!groups.has(key)) groups.set(key, { code, prediction: result.prediction, names: [] });
        groups.get(key).names.push(result.model);
      }
    }
    warningsList.replaceChildren(...[...groups.values()].map((group) => {
      const item = element("li", "", warningText(group.code, group.prediction, group.names, answers.length));
      item.dataset.warning = group.code;
      return item;
    }));
    warningsList.hidden = groups.size === 0;
  }

  // ---- explanations -----------------------------------------------------------------------------------

  explainSelect.addEventListener("change", () => explain());

  async function explain() {
    if (!scored) return;
    const model = explainSelect.value;
    const request = ++explainRequests;
    const { text } = scored;
    explanation.hidden = false;
    explanation.setAttribute("aria-busy", "true");
    explainMessage.textContent = "";
    explainSummary.textContent = `Explaining with ${model}…`;
    try {
      const answer = await postJSON(`explain?${new URLSearchParams({ model })}`, [text]);
      if (request !== explainRequests) return;
      renderWords(answer, text);
    } catch (error) {
      if (request !== explainRequests) return;
      words.replaceChildren();
      delete words.dataset.model;
      explainSummary.textContent = "";
      explainMessage.textContent = `No explanation from ${model}: ${error.message}`;
      if (error.status === 401) showKeyPanel(error.message);
    } finally {
      if (request === explainRequests) explanation.removeAttribute("aria-busy");
    }
  }

  function renderWords(answer, text) {
    const [result] = answer.explanations;
    const chars = Array.from(text);  // the service's offsets count code points
    const read = result.tokens.filter((token) => !token.truncated);
    const scale = Math.max(...read.map((token) => Math.abs(token.contribution)), 0) || 1;
    const nodes = [];
    let position = 0;
    result.tokens.forEach((token, index) => {
      if (token.start > position) nodes.push(document.createTextNode(chars.slice(position, token.start).join("")));
      const span = element("span", "word", chars.slice(token.start, token.end).join(""));
      span.dataset.contribution = String(token.contribution);
      span.dataset.index = String(index);
      span.tabIndex = index === 0 ? 0 : -1;
      if (token.truncated) {
        span.classList.add("truncated");
        span.dataset.truncated = "true";
        span.title = `${token.text}: not read (left out by truncation), contribution 0`;
      } else {
        const strength = Math.min(1, Math.abs(token.contribution) / scale);
        const rgb = token.contribution >= 0 ? POSITIVE_RGB : NEGATIVE_RGB;
        span.style.backgroundColor = `rgba(${rgb.join(", ")}, ${strength.toFixed(3)})`;
        if (strength > 0.55) span.classList.add("strong");
        span.title = `${token.text}: ${signed(token.contribution)} ${direction(token.contribution)}`;
      }
      nodes.push(span);
      position = Math.max(position, token.end);
    });
    if (position < chars.length) nodes.push(document.createTextNode(chars.slice(position).join("")));
    words.replaceChildren(...nodes);
    words.dataset.model = answer.model;
    $("legend-negative").textContent = signed(-scale, 2);
    $("legend-positive").textContent = signed(scale, 2);
    wordDetail.textContent = "";
    const how = EXPLAIN_METHODS[answer.method] || answer.method;
    explainSummary.textContent = `${answer.model} (version ${answer.version}) says ${result.label}, score ` +
      `${scoreText(result.score)} (logit ${signed(result.logit)}). Method: ${how}` +
      (result.bias != null ? ` (bias ${signed(result.bias)}).` : ".") +
      (result.truncated ? " Struck-through words were left out by the truncation: the model never read them." : "") +
      ` Colours scale to the strongest push in this review, ${signed(scale, 2).slice(1)}.`;
  }

  function direction(contribution) {
    if (contribution > 0) return "(pushes towards positive)";
    if (contribution < 0) return "(pushes towards negative)";
    return "(no push)";
  }

  function describeWord(span) {
    wordDetail.textContent = `“${span.textContent}”: ${span.title.slice(span.title.indexOf(":") + 2)}`;
  }

  words.addEventListener("focusin", (event) => {
    if (!event.target.classList.contains("word")) return;
    words.querySelectorAll(".word[tabindex='0']").forEach((span) => { span.tabIndex = -1; });
    event.target.tabIndex = 0;
    describeWord(event.target);
  });
  words.addEventListener("mouseover", (event) => {
    if (event.target.classList.contains("word")) describeWord(event.target);
  });
  // One tab stop for the whole text; the arrow keys, Home and End move between its words.
  words.addEventListener("keydown", (event) => {
    if (!event.target.classList.contains("word")) return;
    const all = words.querySelectorAll(".word");
    const index = Number(event.target.dataset.index);
    const moves = { ArrowRight: index + 1, ArrowDown: index + 1, ArrowLeft: index - 1, ArrowUp: index - 1,
      Home: 0, End: all.length - 1 };
    if (!(event.key in moves)) return;
    event.preventDefault();
    const next = all[Math.max(0, Math.min(all.length - 1, moves[event.key]))];
    if (next) next.focus();
  });

  // ---- start ------------------------------------------------------------------------------------------

  updateCount();
  loadSamples();
  checkReady();
  if (KEYS_REQUIRED) {
    setState("needs-key");
    status.textContent = "This service needs an API key.";
    showKeyPanel("This service needs an API key: enter it to load the models and score reviews.", false);
    $("models-empty").textContent = "The models are listed once the API key is accepted.";
  } else {
    loadModels();
  }
})();
