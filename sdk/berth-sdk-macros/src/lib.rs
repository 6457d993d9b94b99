//! The attribute macros of `berth-sdk`; use them through `berth_sdk`
//! (`#[berth_sdk::http_component]`, `#[berth_sdk::job]`), which re-exports
//! them and holds everything the expansions name (`berth_sdk::__private`),
//! so a component depends on `berth-sdk` alone.
//!
//! Both macros keep the user's function as written and add the glue around
//! it: the `wasi:http/incoming-handler` export for an HTTP component, the
//! `main` of a `wasi:cli/run` command for a job.

#![deny(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{format_ident, quote};
use syn::{Ident, ItemFn, parse_macro_input};

/// Turns `async fn NAME(req: berth_sdk::http::Request) -> impl IntoResponse`
/// (or the same without `async`) into the component's
/// `wasi:http/incoming-handler` export, called once per request.
///
/// The component also gets a `main`, because a component is usually a
/// binary (`src/main.rs`); run as a command, it says it serves HTTP and
/// exits with a failure.
#[proc_macro_attribute]
pub fn http_component(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return error(
            Span::call_site(),
            "error: #[http_component] takes no arguments",
        );
    }
    let mut function = parse_macro_input!(item as ItemFn);
    if function.sig.inputs.len() != 1 {
        return error(
            function.sig.ident.span(),
            "error: an #[http_component] function takes one argument, the request",
        );
    }
    // A function named `main` would clash with the `main` we provide.
    if function.sig.ident == "main" {
        function.sig.ident = Ident::new("__berth_handler", function.sig.ident.span());
    }
    let name = &function.sig.ident;
    let call = if function.sig.asyncness.is_some() {
        quote!(#name(request).await)
    } else {
        quote!(#name(request))
    };
    let component = format_ident!("__BerthComponent");
    quote! {
        #function

        #[doc(hidden)]
        struct #component;

        impl ::berth_sdk::__private::wasip2::exports::http::incoming_handler::Guest for #component {
            fn handle(
                request: ::berth_sdk::__private::wasip2::http::types::IncomingRequest,
                response_out: ::berth_sdk::__private::wasip2::http::types::ResponseOutparam,
            ) {
                ::berth_sdk::__private::serve(request, response_out, |request| async move {
                    ::berth_sdk::http::IntoResponse::into_response(#call)
                });
            }
        }

        ::berth_sdk::__private::wasip2::http::proxy::export!(
            #component with_types_in ::berth_sdk::__private::wasip2
        );

        #[allow(dead_code)]
        fn main() {
            ::berth_sdk::__private::not_a_command();
        }
    }
    .into()
}

/// Turns `async fn main() -> R` (or a plain `fn main() -> R`) into the
/// `main` of a `wasi:cli/run` command, for a component run as a Job. `R` is
/// `()` or `Result<(), E>` with `E: Display`: an error is logged as an
/// `error` line on stderr and the job exits with code 1.
#[proc_macro_attribute]
pub fn job(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return error(Span::call_site(), "error: #[job] takes no arguments");
    }
    let mut function = parse_macro_input!(item as ItemFn);
    if !function.sig.inputs.is_empty() {
        return error(
            function.sig.ident.span(),
            "error: a #[job] function takes no arguments",
        );
    }
    let user = Ident::new("__berth_job", function.sig.ident.span());
    function.sig.ident = user.clone();
    let run = if function.sig.asyncness.is_some() {
        quote!(::berth_sdk::__private::block_on(#user()))
    } else {
        quote!(#user())
    };
    quote! {
        #function

        fn main() {
            ::berth_sdk::job::finish(#run)
        }
    }
    .into()
}

/// A compile error at `span`.
fn error(span: Span, message: &str) -> TokenStream {
    syn::Error::new(span, message).to_compile_error().into()
}
