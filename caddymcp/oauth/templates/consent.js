// Guards Approve against a click meant for another window (double-
// clickjacking: a pop-under, or a page swapped in under the pointer
// between the two clicks of a double-click). Approve ignores mouse and
// touch clicks until, while this page is visible and its window has the
// focus, the pointer has been on the page outside Approve and then on
// Approve. A pointer resting where Approve appears, or jittering on it,
// never arms it. Losing the focus or the visibility disarms it again.
// Keyboard and assistive-technology activations (click events with
// detail 0, which no mouse or touch click has) are never held up: a
// double-click cannot produce them, and nothing focuses the button
// before the user does.
// Without this script the button works as plain HTML.
(function () {
	"use strict";
	var approve = document.getElementById("approve");
	var hint = document.getElementById("approve-hint");
	if (!approve || !hint) {
		return;
	}
	var outside = false;
	var armed = false;
	function present() {
		return document.visibilityState === "visible" && document.hasFocus();
	}
	function disarm() {
		outside = false;
		armed = false;
		approve.setAttribute("aria-disabled", "true");
	}
	function seen(e) {
		if (!e.isTrusted || !present()) {
			return;
		}
		if (!approve.contains(e.target)) {
			outside = true;
		} else if (outside && !armed) {
			armed = true;
			approve.removeAttribute("aria-disabled");
			hint.hidden = true;
		}
	}
	disarm();
	// Capturing, so that nothing on the page can stop them first.
	document.addEventListener("pointermove", seen, true);
	document.addEventListener("pointerdown", seen, true);
	window.addEventListener("blur", disarm);
	window.addEventListener("pagehide", disarm);
	document.addEventListener("visibilitychange", function () {
		if (document.visibilityState !== "visible") {
			disarm();
		}
	});
	approve.addEventListener("click", function (e) {
		if (e.isTrusted && present() && (armed || e.detail === 0)) {
			return;
		}
		e.preventDefault();
		hint.hidden = false;
	}, true);
})();
