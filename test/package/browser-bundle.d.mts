/** Types of browser-bundle.mjs (plain JavaScript: it also runs from the installed-package project). */
export declare function bundleForBrowser(entry: string): Promise<{ js: string; inputs: string[] }>;
